/**
 * The in-process level of EtcdLock, on the holds FileLock uses (filelock/_holds.ts): handles of one Etcd
 * on one lock name queue first-come first-served in this process, and only the head of that queue goes
 * to etcd; a lock taken again inside a `withLock` of the same name (in its async context) re-enters that
 * hold instead of waiting for itself.
 *
 * Guarantees
 * - Nested holds share the root's etcd key (its fencing token and its `lost`). Siblings nested in an
 *   exclusive hold take turns; shared ones overlap; an exclusive lock inside a shared hold fails at once
 *   with ERR_LOCK_UPGRADE. The key is deleted only when the root and every hold nested in it have ended.
 * - The queue key is `etcd:<endpoints>#<Etcd number>/<prefix>locks/<name>/`: no file lock identity starts
 *   with `etcd:`, so file and etcd locks never share a queue.
 *
 * Not guaranteed
 * - Re-entry through another Etcd object: each Etcd is one participant of its own (its lease is what
 *   etcd sees), so two Etcd objects of one process queue for each other in etcd like two processes, and
 *   a lock nested through another Etcd waits for the outer one (until its timeout).
 */
import { dropIfIdle, Hold, heldInContext, lockQueue, runInHold } from '../filelock/_holds.js';
import type { LocalQueue } from '../filelock/_local-queue.js';
import { LockUpgradeError } from '../filelock/errors.js';
import type { LockType } from '../lock.js';
import type { KeyHold, LockKeyOps } from './_lock-keys.js';

/** A hold as LocalLocks hands it out: the etcd key's hold plus its place among this process's holds. */
interface LocalKeyHold extends KeyHold {
  readonly local: Hold;
}

/** Numbers the Etcd objects of this process, for their queue keys. */
let scopes = 0;

/** LockKeyOps with the in-process queue and re-entrancy in front of `keys` (see the module comment). */
export class LocalLocks implements LockKeyOps {
  readonly #keys: LockKeyOps;
  readonly #scope: string;
  /** The etcd hold of each root hold, for the holds nested in it. */
  readonly #roots = new WeakMap<Hold, KeyHold>();

  constructor(keys: LockKeyOps, endpoints: readonly string[]) {
    this.#keys = keys;
    this.#scope = `etcd:${[...endpoints].sort().join(',')}#${++scopes}`;
  }

  lockPrefix(name: string): string {
    return this.#keys.lockPrefix(name);
  }

  /** The in-process identity of lock `name`. */
  identity(name: string): string {
    return `${this.#scope}/${this.lockPrefix(name)}`;
  }

  async acquire(
    name: string,
    type: LockType,
    stop: AbortSignal,
    once: boolean,
  ): Promise<KeyHold | undefined> {
    const id = this.identity(name);
    const parent = heldInContext(id);
    if (parent) return this.#nest(parent, name, type, stop, once);
    const queue = lockQueue(id);
    if (!queue.tryAcquire(type)) {
      if (once) {
        dropIfIdle(id, queue);
        return undefined;
      }
      try {
        await waitForGrant(queue, type, stop);
      } catch (err) {
        dropIfIdle(id, queue);
        throw err;
      }
    }
    let held: KeyHold | undefined;
    try {
      held = await this.#keys.acquire(name, type, stop, once);
    } finally {
      if (!held) {
        queue.release(type);
        dropIfIdle(id, queue);
      }
    }
    if (!held) return undefined;
    const etcdHold = held;
    const local = new Hold(id, type, undefined, async () => {
      try {
        // A lost lease took the key with it; otherwise delete it (the session retries on failure).
        if (!etcdHold.lease.lost.aborted) await this.#keys.release(etcdHold);
      } finally {
        queue.release(type);
        dropIfIdle(id, queue);
      }
    });
    this.#roots.set(local, etcdHold);
    const hold: LocalKeyHold = { ...etcdHold, local };
    return hold;
  }

  async release(hold: KeyHold): Promise<void> {
    await (hold as LocalKeyHold).local.release();
  }

  run<T>(hold: KeyHold, fn: () => T): T {
    return runInHold((hold as LocalKeyHold).local, fn);
  }

  forget(hold: KeyHold): void {
    const ended = (hold as LocalKeyHold).local.release();
    ended?.catch(() => {}); // nothing to report: the key went with the lease
  }

  /** Re-enters `parent`: waits for a grant among the holds nested in it. */
  async #nest(
    parent: Hold,
    name: string,
    type: LockType,
    stop: AbortSignal,
    once: boolean,
  ): Promise<KeyHold | undefined> {
    if (parent.type === 'shared' && type === 'exclusive') throw new LockUpgradeError(this.lockPrefix(name));
    let root = parent;
    while (root.parent) root = root.parent;
    const etcdHold = this.#roots.get(root)!;
    try {
      if (!parent.nested.tryAcquire(type)) {
        if (once) return undefined;
        await waitForGrant(parent.nested, type, stop);
      }
    } finally {
      // A withdrawn request may have been the last thing keeping a released parent alive.
      parent.settle()?.catch(() => {});
    }
    const hold: LocalKeyHold = { ...etcdHold, local: new Hold(parent.key, type, parent) };
    return hold;
  }
}

/**
 * Waits for a grant from `queue`; rejects with `stop.reason` if `stop` aborts first. A grant that
 * arrives in the same turn as the abort wins (the caller owns it and must release it).
 */
function waitForGrant(queue: LocalQueue, type: LockType, stop: AbortSignal): Promise<void> {
  if (stop.aborted) return Promise.reject(stop.reason);
  const { granted, cancel } = queue.enqueue(type);
  return new Promise<void>((resolve, reject) => {
    const onStop = () => {
      if (cancel()) reject(stop.reason);
    };
    stop.addEventListener('abort', onStop, { once: true });
    granted.then(() => {
      stop.removeEventListener('abort', onStop);
      resolve();
    });
  });
}
