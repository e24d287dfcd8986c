/**
 * EtcdClient on the `etcd3` package: one etcd3 client per endpoint, so this file (not etcd3's shuffling
 * pool) decides where each call goes. Calls stick to one endpoint and move to the next when it fails, as
 * etcd's Go client pins one. etcd3's own retries and circuit breakers are switched off: they would
 * multiply the deadline and resend writes whose outcome is unknown.
 *
 * Loaded only through `loadClient()` (a dynamic import), never at `import 'townlock'` time.
 */
import {
  ClientClosedError,
  Etcd3,
  EtcdLeaseInvalidError,
  GRPCCancelledError,
  GRPCDeadlineExceededError,
  GRPCInternalError,
  GRPCUnavailableError,
  GRPCUnknownError,
  type IOptions,
  type IResponseOp,
  type IWatchResponse,
} from 'etcd3';
import { TownlockError } from '../errors.js';
import { type Failure, runCall } from './_call-policy.js';
import {
  type CallOptions,
  CompactedError,
  type DeleteOp,
  type DeleteResult,
  type EtcdClient,
  type KeepAliveListener,
  type KeepAliveStream,
  LeaseNotFoundError,
  type PutOp,
  type PutResult,
  type RangeOp,
  type RangeResult,
  type TxnRequest,
  type TxnResult,
  txnOps,
  type WatchHandle,
  type WatchListener,
  type WatchRequest,
} from './_client.js';
import {
  compareRequest,
  deleteRequest,
  int64,
  opResult,
  putRequest,
  rangeRequest,
  requestOp,
  toKv,
} from './_etcd3-convert.js';
import { EtcdRequestError, EtcdTxnTooLargeError, EtcdUnavailableError } from './errors.js';

type FaultPolicy = NonNullable<NonNullable<IOptions['faultHandling']>['global']>;

/** A fault policy that runs the call once: retries and endpoint choice happen in Etcd3Client. */
const runOnce = {
  execute: <T>(fn: (context: { signal: AbortSignal }) => PromiseLike<T> | T) =>
    Promise.resolve().then(() => fn({ signal: new AbortController().signal })),
} as unknown as FaultPolicy;

/** Messages of failures that happen before a request reaches etcd's state machine. */
const NOT_SENT =
  /No connection established|ECONNREFUSED|Name resolution failed|getaddrinfo|etcdserver: no leader/i;

/** etcd's refusal of a transaction with more operations than its --max-txn-ops (INVALID_ARGUMENT). */
const TOO_MANY_OPS = /too many operations in txn request/;

/** Sorts an etcd3 error into retry classes. */
function classify(err: unknown): Failure {
  if (err instanceof GRPCUnavailableError) return NOT_SENT.test(err.message) ? 'not-sent' : 'transient';
  if (
    err instanceof GRPCDeadlineExceededError ||
    err instanceof GRPCCancelledError ||
    err instanceof GRPCUnknownError ||
    err instanceof GRPCInternalError
  )
    return 'transient';
  return 'fatal';
}

/** The etcd3-backed client. */
export class Etcd3Client implements EtcdClient {
  readonly endpoints: readonly string[];
  readonly maxTxnOps: number;
  readonly #callTimeout: number;
  readonly #hosts: Etcd3[];
  /** Index of the endpoint calls go to until it fails. */
  #pinned = 0;
  /** The streams open on each endpoint (their `fail`), so that a stuck endpoint's can be ended. */
  readonly #streams = new Map<number, Set<(err: unknown) => void>>();
  #closed = false;

  constructor(endpoints: readonly string[], callTimeout: number, maxTxnOps: number) {
    this.endpoints = endpoints;
    this.maxTxnOps = maxTxnOps;
    this.#callTimeout = callTimeout;
    this.#hosts = endpoints.map(
      (e) => new Etcd3({ hosts: `http://${e}`, faultHandling: { host: () => runOnce, global: runOnce } }),
    );
  }

  async range(op: Omit<RangeOp, 'type'>): Promise<RangeResult & { revision: bigint }> {
    const res = await this.#call('range', true, (h, deadline) => h.kv.range(rangeRequest(op), { deadline }));
    const result = opResult({ type: 'range', ...op }, { response_range: res } as IResponseOp) as RangeResult;
    return { ...result, revision: BigInt(res.header.revision) };
  }

  async put(op: Omit<PutOp, 'type'>, options?: CallOptions): Promise<PutResult & { revision: bigint }> {
    const res = await this.#call(
      'put',
      options?.idempotent ?? false,
      (h, deadline) => h.kv.put(putRequest(op), { deadline }),
      options?.onSend,
    );
    return {
      type: 'put',
      prevKv: res.prev_kv ? toKv(res.prev_kv) : undefined,
      revision: BigInt(res.header.revision),
    };
  }

  async delete(
    op: Omit<DeleteOp, 'type'>,
    options?: CallOptions,
  ): Promise<DeleteResult & { revision: bigint }> {
    const res = await this.#call(
      'delete',
      options?.idempotent ?? true,
      (h, deadline) => h.kv.deleteRange(deleteRequest(op), { deadline }),
      options?.onSend,
    );
    return {
      type: 'delete',
      deleted: Number(res.deleted),
      prevKvs: res.prev_kvs.map(toKv),
      revision: BigInt(res.header.revision),
    };
  }

  async txn(request: TxnRequest, options?: CallOptions): Promise<TxnResult> {
    const operations = txnOps(request);
    const limit = this.maxTxnOps;
    if (operations > limit) {
      throw new EtcdTxnTooLargeError(
        `A transaction of ${operations} operations is more than etcd takes (maxTxnOps: ${limit})`,
        operations,
        limit,
      );
    }
    const readOnly = [...request.success, ...request.failure].every((op) => op.type === 'range');
    const res = await this.#call(
      'txn',
      options?.idempotent ?? readOnly,
      (h, deadline) =>
        h.kv.txn(
          {
            compare: request.compare.map(compareRequest),
            success: request.success.map(requestOp),
            failure: request.failure.map(requestOp),
          },
          { deadline },
        ),
      options?.onSend,
    ).catch((err: unknown) => {
      // The last resort: the cluster's --max-txn-ops is lower than maxTxnOps. The refusal is fatal (not
      // retried), and nothing was applied.
      if (!(err instanceof Error && TOO_MANY_OPS.test(err.message))) throw err;
      throw new EtcdTxnTooLargeError(
        `etcd at ${this.endpoints.join(', ')} refused a transaction of ${operations} operations as too many: ` +
          `its --max-txn-ops is lower than maxTxnOps (${limit})`,
        operations,
        limit,
        err,
      );
    });
    const ops = res.succeeded ? request.success : request.failure;
    return {
      succeeded: res.succeeded,
      results: ops.map((op, i) => opResult(op, res.responses[i]!)),
      revision: BigInt(res.header.revision),
    };
  }

  async leaseGrant(ttl: number): Promise<{ id: bigint; ttl: number }> {
    // Not idempotent, but a second grant only leaves an unused lease that expires after ttl.
    const res = await this.#call('leaseGrant', true, (h, deadline) =>
      h.leaseClient.leaseGrant({ TTL: ttl, ID: 0 }, { deadline }),
    );
    if (res.error) throw new Error(`etcd refused the lease: ${res.error}`);
    return { id: BigInt(res.ID), ttl: Number(res.TTL) };
  }

  async leaseRevoke(id: bigint): Promise<void> {
    try {
      await this.#call('leaseRevoke', true, (h, deadline) =>
        h.leaseClient.leaseRevoke({ ID: String(id) }, { deadline }),
      );
    } catch (err) {
      if (!(err instanceof LeaseNotFoundError)) throw err;
    }
  }

  async leaseTimeToLive(id: bigint): Promise<number> {
    try {
      const res = await this.#call('leaseTimeToLive', true, (h, deadline) =>
        h.leaseClient.leaseTimeToLive({ ID: String(id) }, { deadline }),
      );
      return Number(res.TTL);
    } catch (err) {
      if (err instanceof LeaseNotFoundError) return -1;
      throw err;
    }
  }

  keepAlive(id: bigint, listener: KeepAliveListener): KeepAliveStream {
    let queued = 0;
    const stream = this.#openStream(
      (h) => h.leaseClient.leaseKeepAlive(),
      (s) => {
        for (; queued > 0; queued--) s.write({ ID: String(id) });
      },
      (res: { TTL: string }) => listener.onAnswer(Number(res.TTL)),
      (err) => listener.onError(err),
    );
    return {
      send: () => {
        const s = stream.current();
        if (s) s.write({ ID: String(id) });
        else queued++;
      },
      close: stream.close,
      abandon: stream.abandon,
    };
  }

  watch(request: WatchRequest, listener: WatchListener): WatchHandle {
    const filters = [
      ...(request.noPut ? ['Noput' as const] : []),
      ...(request.noDelete ? ['Nodelete' as const] : []),
    ];
    const create = {
      key: Buffer.from(request.key),
      range_end: request.rangeEnd === undefined ? undefined : Buffer.from(request.rangeEnd),
      start_revision: int64(request.fromRevision),
      filters,
      prev_kv: request.prevKv ?? false,
    };
    const stream = this.#openStream(
      (h) => h.watchClient.watch(),
      (s) => s.write({ create_request: create }),
      (res: IWatchResponse) => {
        if (res.created && !res.canceled) listener.onCreated?.(BigInt(res.header.revision));
        if (res.events.length > 0) {
          const events = res.events.map((e) => ({
            type: e.type === 'Delete' ? ('delete' as const) : ('put' as const),
            kv: toKv(e.kv),
            prevKv: e.prev_kv ? toKv(e.prev_kv) : undefined,
          }));
          listener.onEvents(events, BigInt(res.header.revision));
        }
        if (res.canceled) {
          const compacted = res.compact_revision !== '0' && res.compact_revision !== '';
          stream.fail(
            new Error(`etcd cancelled the watch: ${res.cancel_reason || 'no reason given'}`),
            compacted ? BigInt(res.compact_revision) : undefined,
          );
        }
      },
      (err, compactRevision) => listener.onEnd({ error: err, compactRevision }),
    );
    return { close: stream.close };
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const h of this.#hosts) h.close();
  }

  /**
   * Opens a bidirectional stream on the pinned endpoint and wires it: `onOpen` writes the first
   * requests, `onData` gets every response, `onFail` is called once when the stream breaks (not after
   * close). A transient failure moves the pin to the next endpoint for later calls.
   */
  #openStream<Req, Res>(
    open: (host: Etcd3) => Promise<DuplexLike<Req, Res>>,
    onOpen: (s: DuplexLike<Req, Res>) => void,
    onData: (res: Res) => void,
    onFail: (err: unknown, compactRevision?: bigint) => void,
  ) {
    let stream: DuplexLike<Req, Res> | undefined;
    let done = false;
    const index = this.#pinned;
    let live = this.#streams.get(index);
    if (!live) {
      live = new Set();
      this.#streams.set(index, live);
    }
    const streams = live;
    const shut = (s: DuplexLike<Req, Res> | undefined) => {
      if (!s) return;
      s.end();
      s.cancel();
    };
    const fail = (err: unknown, compactRevision?: bigint) => {
      if (done) return;
      done = true;
      streams.delete(fail);
      shut(stream);
      if (classify(err) !== 'fatal') this.#unpin(index);
      onFail(err, compactRevision);
    };
    const close = () => {
      if (done) return;
      done = true;
      streams.delete(fail);
      shut(stream);
    };
    const abandon = () => {
      if (done) return;
      close();
      this.#stuck(index);
    };
    streams.add(fail);
    if (this.#closed) {
      queueMicrotask(() => fail(this.#unavailable('the client is closed')));
    } else {
      open(this.#hosts[index]!).then(
        (s) => {
          if (done) return shut(s);
          stream = s;
          s.on('data', (res) => {
            if (!done) onData(res);
          });
          s.on('error', (err) => fail(err));
          s.on('end', () => fail(new GRPCUnavailableError('the stream ended')));
          onOpen(s);
        },
        (err) => fail(err),
      );
    }
    return { current: () => (done ? undefined : stream), close, fail, abandon };
  }

  /**
   * Endpoint `index` stopped answering: move calls off it and end every stream on it with an error, so
   * that their owners reopen them on the next endpoint (a watch that waits there would wait forever).
   */
  #stuck(index: number): void {
    this.#unpin(index);
    const error = new GRPCUnavailableError(`${this.endpoints[index]} stopped answering`);
    for (const fail of [...(this.#streams.get(index) ?? [])]) fail(error);
  }

  /** Runs one unary call under the policy of _call-policy.ts. */
  #call<T>(
    what: string,
    idempotent: boolean,
    fn: (host: Etcd3, deadline: Date) => Promise<T>,
    onSend?: () => void,
  ): Promise<T> {
    if (this.#closed) return Promise.reject(this.#unavailable('the client is closed'));
    return runCall({
      what,
      idempotent,
      budget: this.#callTimeout,
      hedgeAfter: Math.max(50, this.#callTimeout / 8),
      endpoints: this.#hosts.length,
      pinned: () => this.#pinned,
      unpin: (index) => this.#unpin(index),
      attempt: async (index, deadline) => {
        if (this.#closed) throw this.#unavailable('the client is closed');
        onSend?.();
        try {
          return await fn(this.#hosts[index]!, deadline);
        } catch (err) {
          if (err instanceof EtcdLeaseInvalidError) throw new LeaseNotFoundError(err.message);
          if (err instanceof Error && /required revision has been compacted/.test(err.message))
            throw new CompactedError(err.message);
          if (err instanceof ClientClosedError && this.#closed)
            throw this.#unavailable('the client is closed');
          throw err;
        }
      },
      classify,
      unavailable: (detail, cause) => this.#unavailable(detail, cause),
    }).catch((err: unknown) => {
      // No raw client error leaves the client: what is not one of ours (or the txn-size refusal, which
      // txn() types) is a refusal by etcd that no retry helps.
      if (
        err instanceof TownlockError ||
        err instanceof LeaseNotFoundError ||
        err instanceof CompactedError ||
        !(err instanceof Error) ||
        TOO_MANY_OPS.test(err.message)
      )
        throw err;
      throw new EtcdRequestError(this.endpoints, what, err);
    });
  }

  /** Moves calls off endpoint `index` to the next one, unless another failure already moved them. */
  #unpin(index: number): void {
    if (this.#pinned === index) this.#pinned = (index + 1) % this.#hosts.length;
  }

  /** An EtcdUnavailableError naming every endpoint. */
  #unavailable(detail: string, cause?: unknown): EtcdUnavailableError {
    return new EtcdUnavailableError(this.endpoints, detail, cause);
  }
}

/** The part of a grpc-js duplex stream this file uses. */
interface DuplexLike<Req, Res> {
  write(req: Req): void;
  end(): void;
  cancel(): void;
  on(event: 'data', fn: (res: Res) => void): unknown;
  on(event: 'error', fn: (err: Error) => void): unknown;
  on(event: 'end', fn: () => void): unknown;
}
