/** `townlock lock status`: who holds which locks, like lslocks(8). */
import { isUtf8 } from 'node:buffer';
import fs from 'node:fs';
import { resolveLockTarget } from '../../filelock/_target.js';
import { holdersOfLockFile, type LockHolder } from '../../filelock/holders.js';
import { expectPositionals } from '../args.js';
import { EXIT } from '../errors.js';
import { printJson, printLines, printTable } from '../output.js';
import type { CommandRun } from '../spec.js';
import { existingLockFile, lockDirOf, targetOf } from './_lock-target.js';

const LOCK_SUFFIX = Buffer.from('.lock');

/** A lock file and who holds it, as `lock status` reports it. */
interface LockStatus {
  lockPath: string;
  holders: LockHolder[];
}

export const run: CommandRun = async (args, ctx, input) => {
  if (args.positionals.length > 1) expectPositionals(args, ['FILE|DIR'], input.usage);
  const target = targetOf(args, ctx, input);
  let statuses: LockStatus[];
  if (target.kind === 'dir') {
    const dir = lockDirOf(target.path);
    // Names as bytes: a lock file named in another encoding is found (and shown with U+FFFD), not missed.
    const names = dir
      ? fs
          .readdirSync(dir, { encoding: 'buffer' })
          .filter((n) => n.subarray(-5).equals(LOCK_SUFFIX))
          .sort(Buffer.compare)
      : [];
    statuses = names.map((n) => {
      const path = Buffer.concat([Buffer.from(`${dir}/`), n]);
      return { lockPath: path.toString(), holders: holdersOfLockFile(isUtf8(path) ? path.toString() : path) };
    });
  } else {
    const lock = existingLockFile(target);
    const { lockPath, fsLockPath } = resolveLockTarget(target.path, undefined, target.kind === 'lock-file');
    statuses = [{ lockPath, holders: lock ? holdersOfLockFile(fsLockPath) : [] }];
  }
  if (args.values.json) {
    printJson(ctx.stdout, { locks: statuses });
    return EXIT.ok;
  }
  const rows = statuses.flatMap((s) =>
    s.holders.map((h) => [s.lockPath, String(h.pid), h.mode, h.since ?? '-', h.command ?? '-']),
  );
  if (rows.length > 0) printTable(ctx, ['LOCK', 'PID', 'MODE', 'SINCE', 'COMMAND'], rows);
  else if (target.kind === 'dir')
    printLines(ctx.stdout, `no locks held (${statuses.length} lock file${statuses.length === 1 ? '' : 's'})`);
  else printLines(ctx.stdout, `not locked: ${statuses[0]!.lockPath}`);
  return EXIT.ok;
};
