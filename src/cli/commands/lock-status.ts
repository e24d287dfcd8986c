/** `townlock lock status`: who holds which locks, like lslocks(8). */
import { readdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { holdersOfLockFile, type LockHolder, lockHolders } from '../../filelock/holders.js';
import { lockPathFor } from '../../filelock/options.js';
import { expectPositionals } from '../args.js';
import { EXIT } from '../errors.js';
import { printJson, printTable } from '../output.js';
import type { CommandRun } from '../spec.js';

/** A lock file and who holds it, as `lock status` reports it. */
interface LockStatus {
  lockPath: string;
  holders: LockHolder[];
}

export const run: CommandRun = async (args, ctx, input) => {
  const [target = ctx.cwd] =
    args.positionals.length > 1 ? expectPositionals(args, ['FILE|DIR'], input.usage) : args.positionals;
  const path = resolve(ctx.cwd, target);
  const isDir = (await stat(path).catch(() => undefined))?.isDirectory() ?? false;
  let statuses: LockStatus[];
  if (isDir) {
    const dir = await lockDirOf(path);
    const names = (await readdir(dir).catch(() => [] as string[])).filter((n) => n.endsWith('.lock')).sort();
    statuses = names.map((n) => ({ lockPath: join(dir, n), holders: holdersOfLockFile(join(dir, n)) }));
  } else {
    statuses = [{ lockPath: lockPathFor(path), holders: await lockHolders(path) }];
  }
  if (args.values.json) {
    printJson(ctx.stdout, { locks: statuses });
    return EXIT.ok;
  }
  const rows = statuses.flatMap((s) =>
    s.holders.map((h) => [s.lockPath, String(h.pid), h.mode, h.since ?? '-', h.command ?? '-']),
  );
  if (rows.length === 0)
    ctx.stdout.write(
      isDir
        ? `no locks held (${statuses.length} lock file${statuses.length === 1 ? '' : 's'})\n`
        : `not locked: ${statuses[0]!.lockPath}\n`,
    );
  else printTable(ctx, ['LOCK', 'PID', 'MODE', 'SINCE', 'COMMAND'], rows);
  return EXIT.ok;
};

/** DIR/.gastown/locks if it exists, else DIR (which may itself be a lock directory). */
async function lockDirOf(dir: string): Promise<string> {
  const nested = join(dir, '.gastown', 'locks');
  return (await stat(nested).catch(() => undefined))?.isDirectory() ? nested : dir;
}
