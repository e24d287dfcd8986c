/**
 * The small interface townlock needs from an etcd v3 client: ranges, puts, deletes and transactions with
 * compares on revisions, leases with a keep-alive stream, and watches from a revision. The only
 * implementation (_client-etcd3.ts) sits on the `etcd3` package and is loaded lazily by
 * {@link loadClient}; keeping every other file on this interface leaves a move to bare grpc-js + etcd's
 * protos possible.
 *
 * Guarantees
 * - Every unary call has one deadline, `callTimeout` ms, across all the endpoints it tries. Past it the
 *   call rejects with `EtcdUnavailableError` naming every endpoint; a call never waits for etcd's own
 *   7 s request timeout.
 * - An idempotent call (a read, a delete, or a put/txn the caller marks `idempotent`) is retried on the
 *   next endpoint after any transient failure; any other call only when the failure proves the request
 *   never left (no connection), so a write whose fate is unknown is never sent twice.
 *
 * Not guaranteed
 * - Streams (keep-alive, watch) are not resumed here: they end with an error and their owner reopens.
 *   A stream on an endpoint that stops answering without an error is noticed only by its owner (the
 *   keep-alive, which abandons it: every stream on that endpoint then ends with an error).
 * - Keys and values are UTF-8 strings; binary keys are not supported.
 */
import type { EtcdUnavailableError } from './errors.js';
import { DEFAULT_MAX_TXN_OPS } from './options.js';

/** A key with its value and metadata. Revisions are bigints: etcd's are int64. */
export interface KeyValue {
  key: string;
  value: string;
  createRevision: bigint;
  modRevision: bigint;
  version: bigint;
  lease: bigint;
}

/** Reads the key, or the keys in [key, rangeEnd) when rangeEnd is set (see {@link prefixEnd}). */
export interface RangeOp {
  type: 'range';
  key: string;
  rangeEnd?: string;
  /** At most this many keys (0: no limit). */
  limit?: number;
  /** Sort by this field (default: key order). */
  sortBy?: 'key' | 'create' | 'mod';
  sortOrder?: 'ascend' | 'descend';
  keysOnly?: boolean;
  countOnly?: boolean;
  /** Read at this past revision instead of the latest. */
  revision?: bigint;
  minCreateRevision?: bigint;
  maxCreateRevision?: bigint;
  minModRevision?: bigint;
  maxModRevision?: bigint;
}

/** Writes `value` at `key`, attached to `lease` if set; `prevKv` returns what was there before. */
export interface PutOp {
  type: 'put';
  key: string;
  value: string;
  lease?: bigint;
  prevKv?: boolean;
}

/** Deletes the key, or the keys in [key, rangeEnd). */
export interface DeleteOp {
  type: 'delete';
  key: string;
  rangeEnd?: string;
  prevKv?: boolean;
}

/** One operation inside a transaction. */
export type Op = RangeOp | PutOp | DeleteOp;

/** What a range returned: the keys, how many matched in total, and whether the limit cut the list. */
export interface RangeResult {
  type: 'range';
  kvs: KeyValue[];
  count: number;
  more: boolean;
}
/** What a put returned: the previous key-value when asked for and present. */
export interface PutResult {
  type: 'put';
  prevKv: KeyValue | undefined;
}
/** What a delete returned: how many keys went, and their last values when asked for. */
export interface DeleteResult {
  type: 'delete';
  deleted: number;
  prevKvs: KeyValue[];
}
/** The result of one {@link Op}, of the matching type. */
export type OpResult = RangeResult | PutResult | DeleteResult;

/**
 * A transaction guard on the key, or on every key in [key, rangeEnd) (a range with no key compares as
 * one absent key: revisions and version 0; a value compare on it is false).
 */
export type Compare =
  | {
      key: string;
      rangeEnd?: string;
      target: 'create' | 'mod' | 'version' | 'lease';
      op: '=' | '!=' | '<' | '>';
      value: bigint;
    }
  | { key: string; rangeEnd?: string; target: 'value'; op: '=' | '!=' | '<' | '>'; value: string };

/** A transaction: if every compare holds, run `success`, else `failure`; all at one revision. */
export interface TxnRequest {
  compare: Compare[];
  success: Op[];
  failure: Op[];
}

/** The outcome of a transaction: which branch ran, the results of its ops, and the store revision. */
export interface TxnResult {
  succeeded: boolean;
  results: OpResult[];
  /** The store's revision after the transaction (the revision of its writes, if it wrote). */
  revision: bigint;
}

/** Per-call options. */
export interface CallOptions {
  /**
   * Whether sending the call twice is harmless, so it may be retried after a failure of unknown outcome.
   * Reads are always idempotent. @default true for range and delete, false for put and txn
   */
  idempotent?: boolean;
  /**
   * Called each time a copy of the request is sent (a hedge or a retry sends another). After the call
   * settles, more than one call means a copy other than the one that answered may have been applied,
   * or may still be applied later (a member frozen with it reads it when it resumes).
   */
  onSend?: () => void;
}

/** One change a watch reports. */
export interface WatchEvent {
  type: 'put' | 'delete';
  kv: KeyValue;
  prevKv: KeyValue | undefined;
}

/** What to watch: the key or [key, rangeEnd), from `fromRevision` (default: after the current one). */
export interface WatchRequest {
  key: string;
  rangeEnd?: string;
  fromRevision?: bigint;
  /** Leave out puts (report deletions only). */
  noPut?: boolean;
  /** Leave out deletions. */
  noDelete?: boolean;
  prevKv?: boolean;
}

/** Why a watch ended. `compactRevision` is set when the history from `fromRevision` was compacted. */
export interface WatchEnd {
  error: unknown;
  compactRevision: bigint | undefined;
}

/** Receives a watch's output. Nothing is called after `onEnd` or after the handle is closed. */
export interface WatchListener {
  /**
   * The server accepted the watch; `revision` is its store revision at that moment. Not called for a
   * watch refused at creation (then only `onEnd`).
   */
  onCreated?(revision: bigint): void;
  /** Events in revision order; `revision` is the store revision the response was sent at. */
  onEvents(events: WatchEvent[], revision: bigint): void;
  /** The watch is over and reports nothing more; its owner decides whether to open another. */
  onEnd(end: WatchEnd): void;
}

/** A running watch. */
export interface WatchHandle {
  /** Stops the watch; idempotent; calls no listener. */
  close(): void;
}

/** Receives a keep-alive stream's output. Nothing is called after `onError` or after close. */
export interface KeepAliveListener {
  /** One keep-alive was answered: the lease has `ttl` seconds left (0 or less: it no longer exists). */
  onAnswer(ttl: number): void;
  /** The stream broke; open another to go on. */
  onError(error: unknown): void;
}

/** A keep-alive stream for one lease. */
export interface KeepAliveStream {
  /** Sends one keep-alive request; the answer comes to `onAnswer`. */
  send(): void;
  /** Ends the stream; idempotent; calls no listener. */
  close(): void;
  /**
   * Ends the stream because its endpoint stopped answering (a frozen or black-holed member, which
   * neither answers nor refuses): like close(), and moves calls and new streams off that endpoint, and
   * ends every other stream still open on it with an error, so that their owners reopen elsewhere.
   */
  abandon(): void;
}

/** The etcd operations townlock uses. Unary calls reject with {@link EtcdUnavailableError} past `callTimeout`. */
export interface EtcdClient {
  /** The endpoints, as given. */
  readonly endpoints: readonly string[];
  /** The most operations a transaction may have in each of its lists (etcd's --max-txn-ops). */
  readonly maxTxnOps: number;
  /** A linearizable read; `revision` is the store revision it saw. */
  range(op: Omit<RangeOp, 'type'>): Promise<RangeResult & { revision: bigint }>;
  /** A write; `revision` is the revision it created. */
  put(op: Omit<PutOp, 'type'>, options?: CallOptions): Promise<PutResult & { revision: bigint }>;
  /** Deletes a key or range; `revision` is the store revision after it. */
  delete(op: Omit<DeleteOp, 'type'>, options?: CallOptions): Promise<DeleteResult & { revision: bigint }>;
  /**
   * A transaction; read-only ones count as idempotent unless told otherwise. Rejects with
   * EtcdTxnTooLargeError, without sending it, when {@link txnOps} exceeds `maxTxnOps`, and with the same
   * error when etcd refuses it as too many operations (its --max-txn-ops is lower).
   */
  txn(request: TxnRequest, options?: CallOptions): Promise<TxnResult>;
  /** Grants a lease of `ttl` seconds; resolves with its id and the TTL etcd granted (maybe longer). */
  leaseGrant(ttl: number): Promise<{ id: bigint; ttl: number }>;
  /** Revokes a lease, deleting its keys; resolves too when the lease no longer exists. */
  leaseRevoke(id: bigint): Promise<void>;
  /** The seconds lease `id` has left; -1 when etcd no longer knows it. */
  leaseTimeToLive(id: bigint): Promise<number>;
  /** Opens a keep-alive stream for lease `id` on the current endpoint. */
  keepAlive(id: bigint, listener: KeepAliveListener): KeepAliveStream;
  /** Opens a watch on the current endpoint. */
  watch(request: WatchRequest, listener: WatchListener): WatchHandle;
  /** Closes every connection; later calls reject with EtcdUnavailableError. */
  close(): void;
}

/**
 * The size of a transaction as etcd counts it against --max-txn-ops: the longest of its compare, success
 * and failure lists (each is checked on its own; townlock sends no nested transactions).
 */
export function txnOps(request: TxnRequest): number {
  return Math.max(request.compare.length, request.success.length, request.failure.length);
}

/** Thrown by a call when etcd says the lease it names does not exist (the session treats it as lost). */
export class LeaseNotFoundError extends Error {}
LeaseNotFoundError.prototype.name = 'LeaseNotFoundError';

/** Thrown by a read at a revision that compaction has removed (read the latest instead). */
export class CompactedError extends Error {}
CompactedError.prototype.name = 'CompactedError';

/**
 * The end of the key range that holds every key starting with `prefix` (etcd's "prefix" range_end). The
 * prefix must end in an ASCII character (townlock's all end in '/'), so the end is valid UTF-8 too.
 */
export function prefixEnd(prefix: string): string {
  if (prefix === '') return '\0'; // etcd: from key to the end of the key space
  const last = prefix.charCodeAt(prefix.length - 1);
  if (last >= 0x7f) throw new RangeError(`prefix must end in an ASCII character: ${JSON.stringify(prefix)}`);
  return prefix.slice(0, -1) + String.fromCharCode(last + 1);
}

/** Loads the etcd3-backed client (and with it etcd3 and grpc-js: only now, never at import time). */
export async function loadClient(
  endpoints: readonly string[],
  callTimeout: number,
  maxTxnOps = DEFAULT_MAX_TXN_OPS,
): Promise<EtcdClient> {
  const { Etcd3Client } = await import('./_client-etcd3.js');
  return new Etcd3Client(endpoints, callTimeout, maxTxnOps);
}
