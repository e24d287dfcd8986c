/**
 * The processes a command started, so that `lock run --etcd` can stop all of them when its lock is lost
 * (a `deploy.sh` whose rsync keeps writing after the lock is gone is the thing to prevent). On Linux they
 * are found by scanning /proc for the parent links; each is remembered with its start time, so a PID
 * reused by an unrelated process is never signalled. Elsewhere only the command itself is known.
 */
import fs from 'node:fs';

/** One process: its PID and its start time (clock ticks since boot), which tell a reused PID apart. */
export interface ProcessRef {
  pid: number;
  start: string;
}

/** The `stat` fields of a process: PID, parent PID and start time; undefined when it is gone. */
function stat(pid: number): { ppid: number; start: string; zombie: boolean } | undefined {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return undefined;
  }
  // "pid (comm) state ppid ... starttime(22) ...": comm may hold spaces and parentheses.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const ppid = Number(fields[1]);
  const start = fields[19];
  return start === undefined || !Number.isInteger(ppid)
    ? undefined
    : { ppid, start, zombie: fields[0] === 'Z' };
}

/** `root` and every process below it now (Linux); just `root` elsewhere or when /proc cannot be read. */
export function processTree(root: number): ProcessRef[] {
  const rootStat = process.platform === 'linux' ? stat(root) : undefined;
  if (!rootStat) return [{ pid: root, start: '' }];
  const children = new Map<number, ProcessRef[]>();
  let entries: string[];
  try {
    entries = fs.readdirSync('/proc');
  } catch {
    return [{ pid: root, start: rootStat.start }];
  }
  for (const name of entries) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    const s = stat(pid);
    if (!s) continue;
    const list = children.get(s.ppid) ?? [];
    list.push({ pid, start: s.start });
    children.set(s.ppid, list);
  }
  const tree: ProcessRef[] = [{ pid: root, start: rootStat.start }];
  for (let i = 0; i < tree.length; i++) tree.push(...(children.get(tree[i]!.pid) ?? []));
  return tree;
}

/** Whether the process is still running as the one remembered (a zombie counts as exited). */
export function isRunning({ pid, start }: ProcessRef): boolean {
  if (start === '') {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  }
  const s = stat(pid);
  return s !== undefined && s.start === start && !s.zombie;
}

/**
 * Sends `signal` to each process still running as the one remembered (same PID and start time); a
 * process that has exited, or whose PID now belongs to another process, is skipped.
 */
export function signalAll(refs: ProcessRef[], signal: NodeJS.Signals): void {
  for (const { pid, start } of refs) {
    if (start !== '' && stat(pid)?.start !== start) continue;
    try {
      process.kill(pid, signal);
    } catch {
      // gone meanwhile
    }
  }
}
