/**
 * Holds: the in-process record of who holds which lock, and re-entrancy scoped to one live hold. Used by
 * FileLock (keys: lock file identities) and EtcdLock (keys starting with `etcd:`, which no file identity
 * does), so the two never share a queue.
 *
 * A root hold owns the backend lock (the OS lock, or the etcd key) and an in-process queue grant. A lock taken again inside a hold (in its
 * async context) is a nested hold: it owns a grant from its parent's `nested` queue, so siblings inside
 * an exclusive hold take turns instead of running at once, and shared siblings overlap. A hold ends when
 * its owner released it and nothing is held or queued inside it; only when the root ends is the OS lock
 * given back (for etcd that is a call: the end's promise goes to whoever released last). Re-entry looks up the context's holds that are still owned: a callback that outlives its
 * hold (a timer, an unawaited promise) takes the lock afresh instead of inheriting a released hold.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { LockType } from '../lock.js';
import { LocalQueue } from './_local-queue.js';

/** One hold of one lock file by this process. */
export class Hold {
  /** The lock identity (see _target.ts). */
  readonly key: string;
  readonly type: LockType;
  /** The hold this one re-entered; undefined for the root, which owns the OS lock. */
  readonly parent: Hold | undefined;
  /** Grants for holds nested inside this one. */
  readonly nested = new LocalQueue();
  #owned = true;
  #ended = false;
  readonly #onEnd: (() => void | Promise<void>) | undefined;

  /**
   * `onEnd` (roots only) gives back the backend lock; it runs once, when the hold and everything in it
   * ended. It may return a promise (an etcd delete): release() and settle() return it to their caller.
   */
  constructor(key: string, type: LockType, parent: Hold | undefined, onEnd?: () => void | Promise<void>) {
    this.key = key;
    this.type = type;
    this.parent = parent;
    this.#onEnd = onEnd;
  }

  /** True until its owner releases it; only owned holds can be re-entered. */
  get owned(): boolean {
    return this.#owned;
  }

  /**
   * The owner is done; the hold ends now or when the last hold nested in it ends. Returns the root's
   * `onEnd` result when this release ended the root.
   */
  release(): void | Promise<void> {
    this.#owned = false;
    return this.settle();
  }

  /**
   * Ends the hold if its owner released it and nothing is held or queued inside it, and then each parent
   * that this leaves ended (a loop, not recursion: holds may nest thousands deep). Returns the root's
   * `onEnd` result when the root ended.
   */
  settle(): void | Promise<void> {
    for (let hold: Hold | undefined = this; hold; ) {
      if (hold.#owned || hold.#ended || !hold.nested.idle) return;
      hold.#ended = true;
      const parent: Hold | undefined = hold.parent;
      if (parent) parent.nested.release(hold.type);
      else return hold.#onEnd?.();
      hold = parent;
    }
  }
}

/** The holds the current async context runs in, innermost first. */
interface Frame {
  hold: Hold;
  outer: Frame | undefined;
}

const context = new AsyncLocalStorage<Frame>();

/** The innermost hold of `key` in the current context that its owner still holds, if any. */
export function heldInContext(key: string): Hold | undefined {
  for (let f = context.getStore(); f; f = f.outer) {
    if (f.hold.key === key && f.hold.owned) return f.hold;
  }
  return undefined;
}

/** Runs `fn` with `hold` as the innermost hold of its async context. */
export function runInHold<T>(hold: Hold, fn: () => T): T {
  return context.run({ hold, outer: context.getStore() }, fn);
}

/**
 * Runs `fn` outside every hold of the caller, for work done on behalf of many callers (a group-commit
 * flush): it must not re-enter, or be blocked by, whichever caller happened to start it.
 */
export function outsideHolds<T>(fn: () => T): T {
  return context.exit(fn);
}

/** The in-process queue of each lock that is held or waited for; idle queues are dropped. */
const queues = new Map<string, LocalQueue>();

/** The in-process queue of the lock `key` (a lock file identity or an `etcd:` key), created when missing. */
export function lockQueue(key: string): LocalQueue {
  let queue = queues.get(key);
  if (!queue) {
    queue = new LocalQueue();
    queues.set(key, queue);
  }
  return queue;
}

/** Forgets the queue of `key` when nothing holds or waits on it. */
export function dropIfIdle(key: string, queue: LocalQueue): void {
  if (queue.idle && queues.get(key) === queue) queues.delete(key);
}
