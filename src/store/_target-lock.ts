/**
 * The exclusive lock of the file a store's path names *now*. The file's directory is created (durably)
 * first: the lock's own directory lives inside it. If a symlinked path was pointed elsewhere while we
 * waited, the lock is given back and the new target locked: reading or appending to one file while
 * readers of the path look at another would lose acknowledged data. Shared by FileDocument (JSON stores,
 * the registry, the queue) and JsonlLog.
 */
import { dirname } from 'node:path';
import { mkdirDurable } from '../atomic/_mkdir.js';
import { FileLock } from '../filelock/lock.js';
import type { FileLockOptions } from '../filelock/options.js';

/**
 * Runs `fn(target)` under the exclusive lock of `path`, `target` being the real file it names at that
 * moment (`currentTarget()` resolves it anew). Errors are the caller's to type.
 */
export async function withTargetWriteLock<T>(
  path: string,
  lockOptions: Pick<FileLockOptions, 'timeout' | 'lockDir'>,
  fsync: boolean,
  currentTarget: () => string,
  fn: (target: string) => Promise<T>,
): Promise<T> {
  for (;;) {
    const lock = new FileLock(path, { ...lockOptions, type: 'exclusive' });
    await mkdirDurable(dirname(lock.path), fsync);
    const outcome = await lock.withLock(async () =>
      currentTarget() === lock.path ? { value: await fn(lock.path) } : undefined,
    );
    if (outcome) return outcome.value;
  }
}
