/**
 * The in-process level of the two-level lock: a fair read/write queue per lock file.
 *
 * Grants are strictly first-come first-served: a reader arriving behind a queued writer waits for that
 * writer, so writers are never starved; consecutive readers at the head are granted together. Callers in
 * one process therefore wait on a promise, never by polling the OS lock against each other.
 */
import type { LockType } from './backend.js';

/** A queued request; `grant` settles it. */
interface Waiter {
  type: LockType;
  grant: () => void;
}

/** Fair FIFO reader/writer queue for one lock file within this process. */
export class LocalQueue {
  #readers = 0;
  #writer = false;
  readonly #waiters: Waiter[] = [];

  /** True when nothing holds or waits, so the queue can be forgotten. */
  get idle(): boolean {
    return this.#readers === 0 && !this.#writer && this.#waiters.length === 0;
  }

  /** Takes the lock now if that is fair (nobody queued) and compatible; never waits. */
  tryAcquire(type: LockType): boolean {
    if (this.#waiters.length > 0 || !this.#compatible(type)) return false;
    this.#take(type);
    return true;
  }

  /**
   * Queues a request. Returns the promise of the grant and a cancel function; cancel returns true if it
   * withdrew the request before the grant (otherwise the caller owns the grant and must release it).
   */
  enqueue(type: LockType): { granted: Promise<void>; cancel: () => boolean } {
    let waiter!: Waiter;
    const granted = new Promise<void>((resolve) => {
      waiter = { type, grant: resolve };
    });
    this.#waiters.push(waiter);
    this.#drain();
    const cancel = (): boolean => {
      const i = this.#waiters.indexOf(waiter);
      if (i < 0) return false;
      this.#waiters.splice(i, 1);
      this.#drain();
      return true;
    };
    return { granted, cancel };
  }

  /** Gives back a grant of `type` and wakes whoever is next. */
  release(type: LockType): void {
    if (type === 'exclusive') this.#writer = false;
    else this.#readers--;
    this.#drain();
  }

  /** Whether a grant of `type` is compatible with the current holders. */
  #compatible(type: LockType): boolean {
    return type === 'shared' ? !this.#writer : !this.#writer && this.#readers === 0;
  }

  /** Records a grant. */
  #take(type: LockType): void {
    if (type === 'exclusive') this.#writer = true;
    else this.#readers++;
  }

  /** Grants the head of the queue, and every reader directly behind a granted reader. */
  #drain(): void {
    for (;;) {
      const head = this.#waiters[0];
      if (!head || !this.#compatible(head.type)) return;
      this.#waiters.shift();
      this.#take(head.type);
      head.grant();
    }
  }
}
