/** Options of `Etcd.connect()` and `etcd.lock()`: their documented defaults, merged and validated in one place. */
import { InvalidOptionError } from '../errors.js';
import { DEFAULT_TIMEOUT } from '../filelock/options.js';
import type { LockType } from '../lock.js';

/** Options for {@link Etcd.connect}. */
export interface EtcdOptions {
  /**
   * The cluster's client endpoints, `HOST:PORT` or `http://HOST:PORT` (TLS is not supported yet). Calls go
   * to one endpoint at a time and move to the next when it fails.
   */
  endpoints: readonly string[];
  /** Prefix of every key townlock writes; several towns can share a cluster under different prefixes. @default 'townlock/' */
  prefix?: string;
  /**
   * Seconds the session lease lives without a keep-alive (sent every TTL/3): how long a crashed or frozen
   * holder keeps its locks. etcd grants at least its minimum TTL (2 s with default settings). @default 10
   */
  leaseTtl?: number;
  /**
   * Deadline of each call, in ms, across every endpoint tried: past it the call fails with
   * `ERR_ETCD_UNAVAILABLE`. Keep it above etcd's leader election (about 1-1.5 s) so that losing the
   * leader delays calls instead of failing them. @default 2000
   */
  callTimeout?: number;
  /**
   * The most operations etcd takes in one transaction's compare, success or failure list: its
   * `--max-txn-ops`, which this must equal. Concurrent registry writes are split into transactions
   * within it; one write that needs more fails with `ERR_ETCD_TXN_TOO_LARGE` before anything is sent.
   * At least 3 (a single add or remove). @default 128 (etcd's default)
   */
  maxTxnOps?: number;
}

/** etcd's default `--max-txn-ops`. */
export const DEFAULT_MAX_TXN_OPS = 128;

/** EtcdOptions after defaults are merged and values checked. */
export interface ResolvedEtcdOptions {
  endpoints: readonly string[];
  prefix: string;
  leaseTtl: number;
  callTimeout: number;
  maxTxnOps: number;
}

/** Options for {@link Etcd.lock}: FileLock's waiting options, with the same defaults and meaning. */
export interface EtcdLockOptions {
  /** Shared (read) or exclusive (write). @default 'exclusive' */
  type?: LockType;
  /** How long to wait, in ms. `0` waits forever; a negative value makes one attempt. @default 30000 */
  timeout?: number;
  /** Cancels a wait; the wait rejects with `LockAbortedError`. */
  signal?: AbortSignal;
}

/** EtcdLockOptions after defaults are merged and values checked. */
export interface ResolvedEtcdLockOptions {
  type: LockType;
  timeout: number;
  signal: AbortSignal | undefined;
}

/** `HOST:PORT` or `http://HOST:PORT`, HOST a name, an IPv4 address or a bracketed IPv6 address. */
const ENDPOINT = /^(?:http:\/\/)?(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/;

/** Merges defaults into connect options and validates every field, naming the bad option and value. */
export function resolveEtcdOptions(options: EtcdOptions): ResolvedEtcdOptions {
  if (options === null || typeof options !== 'object')
    throw new InvalidOptionError('options', options, 'an object');
  const {
    endpoints,
    prefix = 'townlock/',
    leaseTtl = 10,
    callTimeout = 2000,
    maxTxnOps = DEFAULT_MAX_TXN_OPS,
  } = options;
  if (!Array.isArray(endpoints) || endpoints.length === 0)
    throw new InvalidOptionError('endpoints', endpoints, 'a non-empty array of "HOST:PORT" strings');
  for (const e of endpoints) {
    if (typeof e !== 'string' || !ENDPOINT.test(e))
      throw new InvalidOptionError('endpoints', e, '"HOST:PORT" or "http://HOST:PORT"');
  }
  if (typeof prefix !== 'string' || LONE_SURROGATE.test(prefix))
    throw new InvalidOptionError('prefix', prefix, 'a string without lone surrogates (UTF-8 encodable)');
  if (typeof leaseTtl !== 'number' || !Number.isInteger(leaseTtl) || leaseTtl < 1 || leaseTtl > 86_400)
    throw new InvalidOptionError('leaseTtl', leaseTtl, 'a whole number of seconds from 1 to 86400');
  if (typeof callTimeout !== 'number' || !Number.isFinite(callTimeout) || !(callTimeout > 0))
    throw new InvalidOptionError('callTimeout', callTimeout, 'a positive number of ms');
  if (typeof maxTxnOps !== 'number' || !Number.isSafeInteger(maxTxnOps) || maxTxnOps < 3)
    throw new InvalidOptionError(
      'maxTxnOps',
      maxTxnOps,
      "a whole number of at least 3 (etcd's --max-txn-ops)",
    );
  return {
    endpoints: endpoints.map((e) => e.replace(/^http:\/\//, '')),
    prefix,
    leaseTtl,
    callTimeout,
    maxTxnOps,
  };
}

/** Merges defaults into lock options and validates every field, naming the bad option and value. */
export function resolveEtcdLockOptions(options: EtcdLockOptions = {}): ResolvedEtcdLockOptions {
  if (options === null || typeof options !== 'object')
    throw new InvalidOptionError('options', options, 'an object');
  const { type = 'exclusive', timeout = DEFAULT_TIMEOUT, signal } = options;
  if (type !== 'exclusive' && type !== 'shared')
    throw new InvalidOptionError('type', type, "'exclusive' or 'shared'");
  if (typeof timeout !== 'number' || Number.isNaN(timeout))
    throw new InvalidOptionError('timeout', timeout, 'a number of ms');
  if (signal !== undefined && !(signal instanceof AbortSignal))
    throw new InvalidOptionError('signal', signal, 'an AbortSignal');
  return { type, timeout: timeout === Number.POSITIVE_INFINITY ? 0 : timeout, signal };
}

/**
 * A UTF-16 surrogate that is not half of a pair: such a string has no UTF-8 form, so it cannot be an etcd
 * key (and encodeURIComponent throws URIError on it).
 */
const LONE_SURROGATE = /\p{Cs}/u;

/**
 * Validates a lock or registry name: any non-empty string of at most 1024 characters that has a UTF-8
 * form (it is percent-encoded into the key). Throws InvalidOptionError naming `option`.
 */
export function checkName(name: unknown, option = 'name'): string {
  if (typeof name !== 'string' || name.length === 0 || name.length > 1024 || LONE_SURROGATE.test(name))
    throw new InvalidOptionError(
      option,
      name,
      'a non-empty string of at most 1024 characters without lone surrogates',
    );
  return name;
}
