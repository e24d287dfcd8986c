/** `townlock lock clean`: delete lock files nobody holds or has open, and nothing else. */
import { cleanLockFile, cleanStaleLocks } from '../../filelock/clean.js';
import { expectPositionals } from '../args.js';
import { EXIT } from '../errors.js';
import { printLines } from '../output.js';
import type { CommandRun } from '../spec.js';
import { existingLockFile, targetOf } from './_lock-target.js';

export const run: CommandRun = async (args, ctx, input) => {
  if (args.positionals.length > 1) expectPositionals(args, ['FILE|DIR'], input.usage);
  const target = targetOf(args, ctx, input);
  if (target.kind === 'dir') {
    const removed = await cleanStaleLocks(target.path);
    printLines(
      ctx.stdout,
      `removed ${removed} unused lock file${removed === 1 ? '' : 's'} from ${target.path}`,
    );
    return EXIT.ok;
  }
  const lock = existingLockFile(target);
  if (!lock) printLines(ctx.stdout, `no lock file: nothing to remove for ${target.shown}`);
  else if (await cleanLockFile(lock.fsLockPath)) printLines(ctx.stdout, `removed ${lock.lockPath}`);
  else printLines(ctx.stdout, `kept ${lock.lockPath}: a process holds it or has it open`);
  return EXIT.ok;
};
