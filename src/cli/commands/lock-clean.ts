/** `townlock lock clean`: delete lock files nobody holds or has open, and nothing else. */
import { cleanLockFile, cleanStaleLocks } from '../../filelock/clean.js';
import { expectPositionals } from '../args.js';
import { EXIT } from '../errors.js';
import type { CommandRun } from '../spec.js';
import { existingLockFile, targetOf } from './_lock-target.js';

export const run: CommandRun = async (args, ctx, input) => {
  if (args.positionals.length > 1) expectPositionals(args, ['FILE|DIR'], input.usage);
  const target = targetOf(args, ctx.cwd, input);
  if (target.kind === 'dir') {
    const removed = await cleanStaleLocks(target.path);
    ctx.stdout.write(`removed ${removed} unused lock file${removed === 1 ? '' : 's'} from ${target.path}\n`);
    return EXIT.ok;
  }
  const lock = existingLockFile(target);
  if (!lock) ctx.stdout.write(`no lock file: nothing to remove for ${target.shown}\n`);
  else if (await cleanLockFile(lock.fsLockPath)) ctx.stdout.write(`removed ${lock.lockPath}\n`);
  else ctx.stdout.write(`kept ${lock.lockPath}: a process holds it or has it open\n`);
  return EXIT.ok;
};
