/** `townlock lock clean`: delete lock files nobody holds or has open, and nothing else. */
import { resolve } from 'node:path';
import { cleanStaleLocks } from '../../filelock/clean.js';
import { expectPositionals } from '../args.js';
import { EXIT } from '../errors.js';
import type { CommandRun } from '../spec.js';

export const run: CommandRun = async (args, ctx, input) => {
  const [target = ctx.cwd] =
    args.positionals.length > 1 ? expectPositionals(args, ['DIR'], input.usage) : args.positionals;
  const dir = resolve(ctx.cwd, target);
  const removed = await cleanStaleLocks(dir);
  ctx.stdout.write(`removed ${removed} unused lock file${removed === 1 ? '' : 's'} from ${dir}\n`);
  return EXIT.ok;
};
