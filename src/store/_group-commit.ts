/**
 * Group commit, written once for every store (JSON files, queues, the machine registry, etcd).
 *
 * Writes made concurrently in one process queue up and are applied in arrival order as one batch, in
 * one durable commit. Each write's callback runs on the batch's draft with its own rollback point, so a
 * callback that throws (or a result that fails validation) is undone and fails alone. Every caller is
 * answered only after the commit: a resolved write is durable, and nothing a batch did is visible to
 * readers before the commit published it (the store swaps in a whole new snapshot).
 *
 * Bounded batches: a store whose commit cannot take any size (etcd refuses a transaction of more than
 * --max-txn-ops operations) says, after each write, whether the batch still fits (`tooLarge`). The write
 * that makes it too large is undone and starts the next batch, with every write queued after it, so
 * queued writes are committed in several commits, still each atomic and in arrival order; a write that
 * does not fit even as the first of a batch fails alone with the store's error. Stores without a limit
 * (the files) commit everything queued in one batch.
 *
 * Contexts: the flush runs on behalf of many callers, so it runs outside every caller's lock holds (it
 * must neither re-enter nor wait behind whichever caller happened to start it). A write made inside a
 * callback of the same store would wait for the batch that is waiting for it: it fails at once with the
 * store's reentrant error instead; the chain of callbacks a write comes from is carried with it, so the
 * cycle is caught across stores too. A write made while the caller itself holds the store's write lock
 * is committed there and then, under that hold, instead of queueing behind it.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { type LongTimer, setLongTimeout } from '../_long-timer.js';
import { outsideHolds } from '../filelock/_holds.js';

/** The mutable view of one batch that write callbacks edit. */
export interface Draft<S, V> {
  /** What callbacks receive. */
  readonly view: V;
  /** A rollback point, set before each callback. */
  mark(): void;
  /** Undoes everything since the last mark(). */
  rollback(): void;
  /** Checks the state after a callback (a `validate` option); throwing rejects that write alone. */
  check?(): void;
  /** The state after the kept writes, and whether it differs from the base. */
  finish(): { next: S; changed: boolean };
}

/**
 * Applies a batch to `base`; an optimistic store may call it again on fresh state after a conflict
 * (a bounded batch may then keep a different number of writes). `failed`: some write of the batch failed
 * on `base`. A locking store can ignore it; an optimistic one must check that `base` was current before
 * answering, since such a failure may depend on anything the write read (a remove of a machine that
 * another process has just added). `readsAll`: some write of the batch read the whole state (an
 * `update`), so the store must check all of it, not only what the batch wrote.
 */
export type ApplyBatch<S> = (
  base: S,
) => Promise<{ next: S; changed: boolean; failed: boolean; readsAll: boolean }>;

/** What a batch held when the store is asked whether it still fits (see `tooLarge`). */
export interface BatchSoFar {
  /** Some write kept in the batch read the whole state. */
  readsAll: boolean;
  /** Some write of the batch failed (the commit will check the whole state). */
  failed: boolean;
}

/** What a store plugs into the group commit; `D` is the draft its `begin` opens. */
export interface GroupCommitConfig<S, V, D extends Draft<S, V> = Draft<S, V>> {
  /**
   * The identity re-entrant writes are recognised by (the file's lock identity, the etcd prefix),
   * computed at every write: a symlinked path may be retargeted between two writes.
   */
  identity(): string;
  /** Opens a draft over the latest committed state. */
  begin(base: S): D;
  /**
   * Makes one batch durable: obtain the latest state, `apply` it, write the result if it changed, and
   * publish the new snapshot.
   */
  commit(apply: ApplyBatch<S>): Promise<void>;
  /**
   * For a store that cannot commit a batch of any size: called after each write that succeeded, with the
   * draft holding the batch so far. Returns undefined while the batch fits in one commit, else the error
   * for a write that does not fit even alone. The write that made the batch too large is undone: it
   * fails with that error if it was the batch's first write, and otherwise starts the next batch (see the
   * module comment). Undefined: batches take every queued write.
   */
  tooLarge?(draft: D, batch: BatchSoFar): Error | undefined;
  /** The error for a write made inside one of this store's own callbacks. */
  reentrant(): Error;
  /** True when the caller's async context holds this store's write lock already. */
  heldByCaller?(): boolean;
  /**
   * How long a write's callback may run, in ms (the store's lock timeout; 0: no limit). A callback that
   * waits for another write to the same store (one queued after it, or one in its own batch) would wait
   * for the batch that waits for it: after this long it fails with ERR_UPDATE_TIMEOUT, its changes are
   * undone, and the batch goes on. The callback itself is not stopped (nothing can stop a running
   * JavaScript function): its other effects still happen, only its draft changes are dropped.
   */
  callbackTimeout?: number;
  /** The error for a callback that ran out of time. */
  timedOut?(ms: number): Error;
}

/** The chain of store callbacks the current code runs inside. */
interface Inside {
  identity: string;
  /** False once the callback settled: code it left behind (a timer, a continuation) is outside it. */
  live: boolean;
  outer: Inside | undefined;
}

const inside = new AsyncLocalStorage<Inside>();

/** Whether the current context runs inside a still-running write callback of the store `identity`. */
function isInside(identity: string): boolean {
  for (let i = inside.getStore(); i; i = i.outer) if (i.live && i.identity === identity) return true;
  return false;
}

/** A write: it edits the view (user callbacks see only that) or, for store internals, the draft itself. */
export type Write<S, V, R> = (view: V, draft: Draft<S, V>) => R | Promise<R>;

/** One queued write. */
interface Pending<S, V> {
  fn: Write<S, V, unknown>;
  readsAll: boolean;
  /** The callback chain of the caller, restored around `fn` so cycles across stores are caught. */
  context: Inside | undefined;
  resolve(value: unknown): void;
  reject(err: unknown): void;
}

/** The write queue of one store object. */
export class GroupCommit<S, V, D extends Draft<S, V> = Draft<S, V>> {
  readonly #config: GroupCommitConfig<S, V, D>;
  #queue: Pending<S, V>[] = [];
  #flushing = false;

  constructor(config: GroupCommitConfig<S, V, D>) {
    this.#config = config;
  }

  /**
   * Queues `fn` to run on the latest committed state and resolves with its result once the batch is
   * durable. `readsAll` says whether `fn` depends on the whole state (true for user callbacks).
   */
  submit<R>(fn: Write<S, V, R>, readsAll = true): Promise<R> {
    const config = this.#config;
    let held: boolean | undefined;
    try {
      // The identity can fail (a symlink loop since the last write): a rejection, never a throw.
      if (isInside(config.identity())) return Promise.reject(config.reentrant());
      held = config.heldByCaller?.();
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise<R>((resolve, reject) => {
      const op: Pending<S, V> = {
        fn,
        readsAll,
        context: inside.getStore(),
        resolve: resolve as (value: unknown) => void,
        reject,
      };
      if (held) {
        // The caller holds the write lock: commit under its hold now; queueing would wait for it forever.
        void this.#run([op]);
        return;
      }
      this.#queue.push(op);
      if (this.#flushing) return;
      this.#flushing = true;
      // Start on the next microtask, so every write made in this tick joins the batch; outside every
      // caller's holds and callbacks, because the flush works for all of them.
      queueMicrotask(() => outsideHolds(() => inside.exit(() => void this.#flush())));
    });
  }

  /** Commits queued batches until the queue is empty; the writes a batch left go first in the next. */
  async #flush(): Promise<void> {
    try {
      while (this.#queue.length > 0) this.#queue.unshift(...(await this.#run(this.#queue.splice(0))));
    } finally {
      this.#flushing = false;
    }
  }

  /** A callback's result, or ERR_UPDATE_TIMEOUT once it ran longer than callbackTimeout. */
  #bounded<T>(result: T | Promise<T>): Promise<T> | T {
    const { callbackTimeout: ms = 0, timedOut } = this.#config;
    if (!(result instanceof Promise) || !(ms > 0) || !timedOut) return result;
    let timer: LongTimer | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setLongTimeout(() => reject(timedOut(ms)), ms);
    });
    result.catch(() => {}); // a callback abandoned at its deadline may still fail later: nobody listens
    return Promise.race([result, expired]).finally(() => timer?.clear());
  }

  /**
   * Commits one batch, or the part of it that fits in one commit, and answers each of its writers.
   * Resolves with the writes left for the next batch (those after the cut). Never rejects.
   */
  async #run(batch: Pending<S, V>[]): Promise<Pending<S, V>[]> {
    const config = this.#config;
    let outcomes: Outcome[] = [];
    /** How many writes of the batch the last application kept (the rest wait for the next batch). */
    let taken = batch.length;
    const identity = config.identity();
    const apply: ApplyBatch<S> = async (base) => {
      outcomes = [];
      taken = batch.length;
      let readsAll = false;
      const draft = config.begin(base);
      for (const [i, op] of batch.entries()) {
        draft.mark();
        const scope: Inside = { identity, live: true, outer: op.context };
        let outcome: Outcome;
        try {
          const value = await this.#bounded(inside.run(scope, () => op.fn(draft.view, draft)));
          draft.check?.();
          outcome = { ok: true, value };
        } catch (err) {
          draft.rollback();
          outcome = { ok: false, value: err };
        } finally {
          scope.live = false;
        }
        if (outcome.ok && config.tooLarge) {
          const failed = outcomes.some((o) => !o.ok);
          const tooLarge = config.tooLarge(draft, { readsAll: readsAll || op.readsAll, failed });
          if (tooLarge) {
            draft.rollback();
            if (i > 0) {
              taken = i; // this write and the ones after it start the next batch
              break;
            }
            outcome = { ok: false, value: tooLarge }; // too large even alone
          }
        }
        readsAll ||= op.readsAll;
        outcomes.push(outcome);
      }
      return { ...draft.finish(), failed: outcomes.some((o) => !o.ok), readsAll };
    };
    let commitError: { err: unknown } | undefined;
    try {
      await config.commit(apply);
    } catch (err) {
      commitError = { err };
    }
    // A failed commit fails every write queued with it, also those it left for the next batch: going on
    // would make the last of them wait one commit (one deadline) per batch.
    const answered = commitError ? batch : batch.slice(0, taken);
    answered.forEach((op, i) => {
      const outcome = outcomes[i];
      // A write that failed on its own keeps its own error, whatever became of the commit.
      if (outcome && !outcome.ok) op.reject(outcome.value);
      else if (commitError) op.reject(commitError.err);
      else op.resolve(outcome?.value);
    });
    return commitError ? [] : batch.slice(taken);
  }
}

/** What one write's callback did in the last application of its batch. */
interface Outcome {
  ok: boolean;
  value: unknown;
}
