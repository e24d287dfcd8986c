/**
 * EtcdDocument: the machine registry's store on etcd (the etcd half of every DocumentStore), one key
 * per machine (layout: _registry-keys.ts).
 *
 * Reads are synchronous, from memory (_registry-memory.ts) that a watch on the registry's keys keeps
 * current. A commit publishes its own result at its revision, so a process reads its writes at once;
 * nothing ever goes back to an older revision. reload() is a linearizable read (a range of every key at
 * the current revision). When the watch's history was compacted away, the registry is read again whole
 * and watched from there; a broken watch is reopened where it stopped.
 *
 * Writes: the group commit hands over one batch at a time; each becomes one transaction whose compares
 * make it serializable (_registry-batch.ts). When they fail, the transaction's failure branch brings the
 * keys changed since the batch's snapshot, memory takes them (or reads everything again when machines
 * were deleted meanwhile), and the batch is applied again, so its callbacks may run more than once; this
 * goes on, with a short random pause from the second conflict on, until `lockTimeout` has passed
 * (then ERR_LOCK_TIMEOUT).
 *
 * Size: the group commit asks `tooLarge` after every write and cuts the batch before its transaction
 * would have more operations than the client's `maxTxnOps` (etcd's --max-txn-ops); the writes after the
 * cut go to the next batch, and a write too large alone fails with ERR_ETCD_TXN_TOO_LARGE.
 *
 * Unknown outcomes: a transaction is resent by the client when an attempt's fate is unknown (a leader
 * died with the request in flight), which is safe because its compares fail once it has been applied.
 * To tell "my first copy was applied" from "someone else changed the registry", every writing
 * transaction also stores a fresh batch id in this writer's key, and the failure branch reads it back.
 * When no answer comes within `callTimeout`, the batch fails with ERR_ETCD_UNAVAILABLE saying it may or
 * may not have been applied; it is never sent again blindly.
 *
 * Not guaranteed
 * - Machines deleted by hand (etcdctl del) without rewriting the epoch key can go unnoticed by an
 *   update() racing with the deletion.
 * - A write whose session lease ends while it is in flight fails with ERR_ETCD_UNAVAILABLE even when it
 *   was applied: the writer's batch-id key went with the lease. (When the transaction was sent more than
 *   once and its compares failed without its batch id, the lease is checked: if it ended, the batch is
 *   not run again but fails so, since a copy may have been applied.)
 */
import { LockTimeoutError } from '../filelock/errors.js';
import type { EntryChange } from '../registry/_draft.js';
import type { RegistryState } from '../registry/_format.js';
import type { DocumentStore } from '../store/_document.js';
import type { ApplyBatch } from '../store/_group-commit.js';
import {
  CompactedError,
  type EtcdClient,
  type KeyValue,
  LeaseNotFoundError,
  type RangeResult,
  type WatchHandle,
} from './_client.js';
import { type BatchPlan, batchOps, planBatch, planOps } from './_registry-batch.js';
import type { RegistryKeys } from './_registry-keys.js';
import { RegistryMemory, type RegistrySnapshot } from './_registry-memory.js';
import type { Session } from './_session.js';
import { EtcdTxnTooLargeError, EtcdUnavailableError } from './errors.js';

/** Keys per page of a full read. */
const PAGE = 1000;

/** Numbers the documents of this process, for their writer keys. */
let documents = 0;

/** What EtcdDocument needs from its Etcd. */
export interface DocumentContext {
  client: EtcdClient;
  session: Session;
  keys: RegistryKeys;
  /** Where the registry is, for messages: `etcd://<endpoints>/<root>`. */
  location: string;
  /** Re-entrant writes are recognised by it (endpoints, prefix and name). */
  identity: string;
  /** How long a write may keep retrying after conflicts, in ms (0: forever; negative: one attempt). */
  lockTimeout: number;
}

/** The registry's store on etcd (see the module comment). */
export class EtcdDocument implements DocumentStore<RegistryState> {
  readonly identity: string;
  readonly location: string;
  readonly #context: DocumentContext;
  readonly #memory: RegistryMemory;
  readonly #writer = ++documents;
  #batches = 0;
  #watch: WatchHandle | undefined;
  #retry: NodeJS.Timeout | undefined;
  #pause = 0;
  #closed = false;

  private constructor(context: DocumentContext) {
    this.#context = context;
    this.identity = context.identity;
    this.location = context.location;
    this.#memory = new RegistryMemory(context.keys, context.location);
  }

  /** Reads the whole registry and starts watching it. Rejects with EtcdUnavailableError. */
  static async open(context: DocumentContext): Promise<EtcdDocument> {
    const doc = new EtcdDocument(context);
    await doc.#readAll();
    doc.#startWatch();
    return doc;
  }

  /** The latest snapshot this process knows; throws the registry's corruption or version error. */
  read(): RegistrySnapshot {
    const snapshot = this.#memory.snapshot();
    if (snapshot.error) throw snapshot.error;
    return snapshot;
  }

  /** A linearizable read: afterwards memory is at least as new as every write committed before. */
  async reload(): Promise<RegistrySnapshot> {
    this.#checkOpen();
    await this.#readAll();
    return this.read();
  }

  /** Commits one batch (see the module comment). */
  async commit(apply: ApplyBatch<RegistryState>): Promise<void> {
    this.#checkOpen();
    const { lockTimeout } = this.#context;
    const start = performance.now();
    let base = this.read();
    for (let attempt = 1; ; attempt++) {
      const { next, changed, failed, readsAll } = await apply(base.state);
      const plan = planBatch(this.#context.keys, base, next, readsAll || failed || !changed);
      if (!plan) return;
      const operations = planOps(plan);
      if (operations > this.#context.client.maxTxnOps) throw this.#tooLarge(operations); // see tooLarge()
      const conflict = await this.#send(plan, base);
      if (!conflict) return;
      const waited = performance.now() - start;
      if (lockTimeout < 0 || (lockTimeout > 0 && waited >= lockTimeout)) {
        throw new LockTimeoutError(this.location, Math.round(waited), undefined);
      }
      base = await this.#catchUp(conflict.changes, conflict.revision);
      if (attempt > 1) await pause(Math.random() * Math.min(2 ** attempt, 100));
    }
  }

  /**
   * Whether a batch that made `changes` still fits in one transaction: undefined if it does, else the
   * error for a write that does not fit alone. `whole`: a write of the batch read the whole registry or
   * failed (the transaction then compares the whole registry instead of each machine). The group commit
   * asks after every write, so the batch it hands to commit() always fits.
   */
  tooLarge(changes: Iterable<EntryChange>, whole: boolean): EtcdTxnTooLargeError | undefined {
    const operations = batchOps(changes, whole);
    return operations > this.#context.client.maxTxnOps ? this.#tooLarge(operations) : undefined;
  }

  /** Stops the watch; later writes and reloads fail with EtcdUnavailableError. Idempotent. */
  close(): void {
    this.#closed = true;
    this.#watch?.close();
    this.#watch = undefined;
    clearTimeout(this.#retry);
  }

  /**
   * Sends one batch. Resolves undefined once it is committed (and published), or with what changed
   * since the batch's snapshot when its compares failed.
   */
  async #send(
    plan: BatchPlan,
    base: RegistrySnapshot,
  ): Promise<{ changes: KeyValue[]; revision: bigint } | undefined> {
    const { client, keys, session } = this.#context;
    const since = {
      type: 'range',
      key: keys.root,
      rangeEnd: keys.rootEnd,
      minModRevision: base.revision + 1n,
    } as const;
    if (plan.ops.length === 0) {
      // Nothing to write: only check that the snapshot the batch read is current.
      const res = await client.txn({ compare: plan.compare, success: [], failure: [since] });
      // Only a compare on the whole registry says that memory is the store's state at that revision.
      if (res.succeeded && plan.whole) this.#memory.confirm(res.revision);
      return res.succeeded
        ? undefined
        : { changes: (res.results[0] as RangeResult).kvs, revision: res.revision };
    }
    const lease = await session.current();
    const writerKey = keys.writer(lease.hex, this.#writer);
    const id = `${++this.#batches}`;
    let res: Awaited<ReturnType<EtcdClient['txn']>>;
    let copies = 0;
    const leaseEnded = (cause?: unknown) =>
      new EtcdUnavailableError(
        client.endpoints,
        `the session lease ended while a write to ${this.location} was in flight; it may or may not have been applied`,
        cause,
      );
    try {
      res = await client.txn(
        {
          compare: plan.compare,
          success: [...plan.ops, { type: 'put', key: writerKey, value: id, lease: lease.id }],
          failure: [{ type: 'range', key: writerKey }, since],
        },
        { idempotent: true, onSend: () => copies++ }, // safe to resend: see _registry-batch.ts
      );
    } catch (err) {
      if (!(err instanceof LeaseNotFoundError)) throw err;
      session.markLost(lease, 'etcd no longer knows the session lease');
      throw leaseEnded(err);
    }
    if (res.succeeded) {
      this.#memory.publish(plan.changes, res.revision, plan.whole);
      return undefined;
    }
    const mine = (res.results[0] as RangeResult).kvs[0];
    if (mine?.value === id) {
      // An earlier copy of this very transaction was applied; this copy found its own changes.
      this.#memory.publish(plan.changes, mine.modRevision, plan.whole);
      return undefined;
    }
    if (copies > 1 && (lease.lost.aborted || (await this.#leaseEnded(lease.id)))) {
      // Another copy may have been applied, and the writer key that would prove it went with the
      // lease: running the batch again could apply it twice (a relative update()). Unknown outcome.
      throw leaseEnded();
    }
    return { changes: (res.results[1] as RangeResult).kvs, revision: res.revision };
  }

  /** Whether etcd no longer knows lease `id` (true too when that cannot be asked: unknown counts as ended). */
  async #leaseEnded(id: bigint): Promise<boolean> {
    const ttl = await this.#context.client.leaseTimeToLive(id).catch(() => -1);
    return ttl <= 0;
  }

  /** Brings memory up to `revision` with the keys changed since the last snapshot; the new snapshot. */
  async #catchUp(changes: KeyValue[], revision: bigint): Promise<RegistrySnapshot> {
    const { keys } = this.#context;
    if (changes.some((kv) => kv.key === keys.epoch))
      await this.#readAll(); // machines were deleted
    else this.#memory.applyChanges(changes, revision);
    return this.read();
  }

  /** Reads every key of the registry at one revision, page by page, into memory. */
  async #readAll(): Promise<void> {
    const { client, keys } = this.#context;
    for (;;) {
      const first = await client.range({ key: keys.root, rangeEnd: keys.rootEnd, limit: PAGE });
      const kvs = [...first.kvs];
      let more = first.more;
      try {
        while (more) {
          const page = await client.range({
            key: `${kvs.at(-1)!.key}\0`,
            rangeEnd: keys.rootEnd,
            limit: PAGE,
            revision: first.revision,
          });
          kvs.push(...page.kvs);
          more = page.more;
        }
      } catch (err) {
        if (err instanceof CompactedError) continue; // the first page's revision was compacted meanwhile
        throw err;
      }
      this.#memory.loadAll(kvs, first.revision);
      return;
    }
  }

  /** Watches every key of the registry from just after what memory reflects. */
  #startWatch(): void {
    if (this.#closed) return;
    const { client, keys } = this.#context;
    this.#watch = client.watch(
      { key: keys.root, rangeEnd: keys.rootEnd, fromRevision: this.#memory.watermark + 1n },
      {
        onCreated: () => {
          this.#pause = 0;
        },
        onEvents: (events) => this.#memory.applyEvents(events),
        onEnd: (end) => {
          this.#watch = undefined;
          if (end.compactRevision !== undefined) this.#resync();
          else this.#later(() => this.#startWatch());
        },
      },
    );
  }

  /** After a compaction: reads everything again, then watches from there (retrying while etcd is away). */
  #resync(): void {
    if (this.#closed) return;
    this.#readAll().then(
      () => this.#startWatch(),
      () => this.#later(() => this.#resync()),
    );
  }

  /** Runs `fn` after a pause that doubles from 50 ms to 2 s while etcd keeps failing. */
  #later(fn: () => void): void {
    if (this.#closed) return;
    this.#pause = Math.min(Math.max(this.#pause * 2, 50), 2000);
    this.#retry = setTimeout(fn, this.#pause);
  }

  #tooLarge(operations: number): EtcdTxnTooLargeError {
    const limit = this.#context.client.maxTxnOps;
    return new EtcdTxnTooLargeError(
      `A write to ${this.location} needs an etcd transaction of ${operations} operations, more than ` +
        `the ${limit} etcd takes (maxTxnOps)`,
      operations,
      limit,
    );
  }

  #checkOpen(): void {
    if (this.#closed)
      throw new EtcdUnavailableError(
        this.#context.client.endpoints,
        `the registry ${this.location} was closed`,
      );
  }
}

/** Resolves after `ms` ms. */
function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
