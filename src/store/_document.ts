/**
 * The interface every store backend implements under the group commit: the file (FileDocument, flock)
 * and etcd. A backend keeps immutable committed snapshots, serves them synchronously, and commits one
 * batch at a time durably and atomically.
 */
import type { ApplyBatch } from './_group-commit.js';

/** One committed version of a document. Never mutated once published. */
export interface Snapshot<S> {
  readonly state: S;
}

/** Where a document lives. */
export interface DocumentStore<S> {
  /** What re-entrant writes are recognised by (the lock identity of the file; the etcd prefix). */
  readonly identity: string;
  /** The latest committed snapshot this process knows, refreshed first if the source changed. */
  read(): Snapshot<S>;
  /** A read that is at least as new as every write committed before it began (linearizable). */
  reload(): Promise<Snapshot<S>>;
  /**
   * Commits one batch: get the latest state, `apply` (possibly more than once, on conflict), make the
   * result durable and publish it.
   */
  commit(apply: ApplyBatch<S>): Promise<void>;
  /** True when the caller's async context holds this store's write lock (writes then commit under it). */
  heldByCaller?(): boolean;
}
