/**
 * Helpers for tests that use real child processes: spawn a fixture, await its stdout handshake lines
 * (never sleeps), and always reap every child, even when a test fails.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
/** The built package the fixtures import (npm test builds it first). */
export const DIST = resolve(here, '../../dist');

/** A running child with line-oriented stdout. */
export interface Child {
  proc: ChildProcess;
  lines: string[];
  /** stderr, split into lines. */
  errLines: string[];
  stderr: () => string;
  /** Resolves with the first stdout line (past or future) matching `pattern`; rejects at the deadline or exit. */
  waitFor(pattern: RegExp | string, deadlineMs?: number): Promise<string>;
  /** The same for stderr lines. */
  waitForErr(pattern: RegExp | string, deadlineMs?: number): Promise<string>;
  /** Resolves with the exit code (or signal name) once the child ends; rejects at the deadline. */
  exited(deadlineMs?: number): Promise<number | string>;
  send(line: string): void;
}

const children = new Set<ChildProcess>();
/** Children started detached: each leads a process group of its own, killed as a whole. */
const groupLeaders = new Set<ChildProcess>();

/** SIGKILLs the process group a detached child leads, and every descendant that left the group. */
export function killGroup(proc: ChildProcess): void {
  for (const pid of [proc.pid!, ...descendants(proc.pid!)]) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
  try {
    process.kill(-proc.pid!, 'SIGKILL');
  } catch {
    // the group is gone already
  }
}

/** Every descendant of `root` (Linux /proc), e.g. the per-connection processes an sshd forked. */
function descendants(root: number): number[] {
  const parent = new Map<number, number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      // Field 4 of /proc/PID/stat is the parent pid; the command (field 2) is in parentheses.
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      parent.set(Number(name), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // exited while we looked
    }
  }
  const found: number[] = [];
  const walk = (pid: number) => {
    for (const [child, ppid] of parent) {
      if (ppid === pid) {
        found.push(child);
        walk(child);
      }
    }
  };
  walk(root);
  return found;
}

/** Starts `command args`, tracking it for {@link reapAll}. */
export function start(command: string, args: string[], env: NodeJS.ProcessEnv = {}, detached = false): Child {
  const proc = spawn(command, args, {
    env: { ...process.env, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
    detached,
  });
  children.add(proc);
  if (detached) groupLeaders.add(proc);
  const lines: string[] = [];
  const errLines: string[] = [];
  let err = '';
  let partial = '';
  let exit: number | string | undefined;
  const listeners = new Set<() => void>();
  const notify = () => {
    for (const l of listeners) l();
  };
  proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    const parts = (partial + chunk).split('\n');
    partial = parts.pop()!;
    lines.push(...parts);
    notify();
  });
  proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    err += chunk;
    errLines.splice(0, errLines.length, ...err.split('\n'));
    notify();
  });
  proc.stdin!.on('error', () => {});
  proc.on('close', (code, signal) => {
    exit = code ?? signal ?? 'unknown';
    children.delete(proc);
    notify();
  });
  const waitUntil = <T>(check: () => T | undefined, what: string, deadlineMs: number) =>
    new Promise<T>((resolvePromise, reject) => {
      const tick = () => {
        const value = check();
        if (value !== undefined) return done(() => resolvePromise(value));
        if (exit !== undefined && what !== 'exit') {
          done(() => reject(new Error(`child exited (${exit}) before ${what}; stderr: ${err}`)));
        }
      };
      const done = (fn: () => void) => {
        clearTimeout(timer);
        listeners.delete(tick);
        fn();
      };
      const timer = setTimeout(
        () =>
          done(() =>
            reject(new Error(`deadline ${deadlineMs} ms passed waiting for ${what}; stderr: ${err}`)),
          ),
        deadlineMs,
      );
      listeners.add(tick);
      tick();
    });
  const find = (from: string[], pattern: RegExp | string) =>
    from.find((l) => (typeof pattern === 'string' ? l === pattern : pattern.test(l)));
  return {
    proc,
    lines,
    errLines,
    stderr: () => err,
    waitFor: (pattern, deadlineMs = 15_000) =>
      waitUntil(() => find(lines, pattern), `line ${pattern}`, deadlineMs),
    waitForErr: (pattern, deadlineMs = 15_000) =>
      waitUntil(() => find(errLines, pattern), `stderr line ${pattern}`, deadlineMs),
    exited: (deadlineMs = 30_000) => waitUntil(() => exit, 'exit', deadlineMs),
    send: (line) => proc.stdin!.write(`${line}\n`),
  };
}

/** Starts a fixture script from test/multiprocess/fixtures with plain node (it imports from dist/). */
export function fixture(name: string, args: string[] = [], env: NodeJS.ProcessEnv = {}): Child {
  return start(process.execPath, [join(here, 'fixtures', name), ...args], { TOWNLOCK_DIST: DIST, ...env });
}

/** Kills (SIGKILL) every child still running (the whole group of detached ones); call from after/afterEach. */
export function reapAll(): void {
  for (const proc of children) {
    if (groupLeaders.has(proc)) killGroup(proc);
    proc.kill('SIGKILL');
  }
  children.clear();
  groupLeaders.clear();
}

/** Makes a temporary directory and returns it with its remover. */
export function tempDir(prefix = 'townlock-'): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Whether `tool` is on PATH (or an absolute path that exists). */
export function hasTool(tool: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;
}

/**
 * Returns true when `tool` is present. When it is missing, CI (CI=true, where .ci/run installs every tool)
 * fails the test loudly; a developer machine skips it with the reason printed.
 */
export function requireTool(
  t: { skip: (reason: string) => void },
  tool: string,
  found = hasTool(tool),
): boolean {
  if (found) return true;
  const reason = `${tool} is not installed; .ci/run installs it (apt-get install)`;
  if (process.env.CI) throw new Error(reason);
  t.skip(reason);
  return false;
}

/**
 * Returns true when this process runs as root, which `what` needs (acting as another user). CI runs as
 * root, so there a test that is not root fails loudly; a developer machine skips it with the reason.
 */
export function requireRoot(t: { skip: (reason: string) => void }, what: string): boolean {
  if (process.getuid?.() === 0) return true;
  if (process.env.CI) throw new Error(`CI runs as root: this test needs root to ${what}`);
  t.skip(`needs root (to ${what})`);
  return false;
}

/**
 * Copies dist/ into `dir` with one source change applied to `file` (relative to dist), for control runs
 * that show a test fails once a safety mechanism is removed. Returns the copy's path.
 */
export function mutatedDist(
  dir: string,
  name: string,
  file: string,
  search: RegExp,
  replace: string,
): string {
  const copy = join(dir, name);
  cpSync(DIST, copy, { recursive: true });
  const target = join(copy, file);
  const source = readFileSync(target, 'utf8');
  const patched = source.replace(search, replace);
  if (patched === source) throw new Error(`mutation ${search} did not apply to ${file}`);
  writeFileSync(target, patched);
  // The copy resolves its dependencies (koffi) through node_modules beside it.
  const modules = join(dir, 'node_modules');
  if (!existsSync(modules)) symlinkSync(join(DIST, '..', 'node_modules'), modules);
  return copy;
}
