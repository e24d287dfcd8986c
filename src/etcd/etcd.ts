/**
 * Etcd: townlock's connection to an etcd cluster, for towns that span hosts. It owns one session lease
 * (kept alive every TTL/3) to which every lock key of this process is attached, so `close()` releases
 * every held lock at once and a crashed process releases them within `leaseTtl` seconds. It opens the
 * machine registries kept in the cluster, and `close()` closes them too.
 *
 * The etcd client (the `etcd3` package and grpc-js) is loaded by `connect()`, and the registry code by
 * `registry()`, not when this module is imported: `import 'townlock'` stays free of the client, and
 * `import 'townlock/etcd'` of both.
 *
 * A connected Etcd keeps the process alive (keep-alive timer and stream) until `close()`, like a socket.
 */
import type { EtcdClient } from './_client.js';
import { loadClient } from './_client.js';
import { LocalLocks } from './_local-locks.js';
import { LockKeys } from './_lock-keys.js';
import { Session } from './_session.js';
import { EtcdLock } from './lock.js';
import {
  checkName,
  type EtcdLockOptions,
  type EtcdOptions,
  type ResolvedEtcdOptions,
  resolveEtcdOptions,
} from './options.js';
import type { EtcdMachineRegistry, EtcdRegistryOptions } from './registry.js';

/** A connection to an etcd cluster with one session lease; get one from {@link Etcd.connect}. */
export class Etcd {
  /** The endpoints, `HOST:PORT`. */
  readonly endpoints: readonly string[];
  /** Prefix of every key townlock writes. */
  readonly prefix: string;
  /** Requested session lease TTL, in seconds. */
  readonly leaseTtl: number;
  /** Deadline of each etcd call, in ms. */
  readonly callTimeout: number;
  /** The most operations of one transaction's list (etcd's --max-txn-ops). */
  readonly maxTxnOps: number;
  readonly #client: EtcdClient;
  readonly #session: Session;
  readonly #keys: LocalLocks;
  /** The registries opened and not closed yet, closed by close(). */
  readonly #registries = new Set<EtcdMachineRegistry>();

  private constructor(options: ResolvedEtcdOptions, client: EtcdClient, session: Session) {
    this.endpoints = options.endpoints;
    this.prefix = options.prefix;
    this.leaseTtl = options.leaseTtl;
    this.callTimeout = options.callTimeout;
    this.maxTxnOps = options.maxTxnOps;
    this.#client = client;
    this.#session = session;
    // Waiters read again every TTL/3 without news from their watch, as often as the keep-alive beats.
    const recheck = (options.leaseTtl * 1000) / 3;
    this.#keys = new LocalLocks(new LockKeys(client, session, options.prefix, recheck), options.endpoints);
  }

  /**
   * Connects and grants the session lease. Rejects with `InvalidOptionError` for bad options and with
   * `EtcdUnavailableError` (naming the endpoints) if no endpoint grants a lease within `callTimeout`.
   */
  static async connect(options: EtcdOptions): Promise<Etcd> {
    const resolved = resolveEtcdOptions(options);
    const client = await loadClient(resolved.endpoints, resolved.callTimeout, resolved.maxTxnOps);
    const session = new Session(client, resolved.leaseTtl);
    try {
      await session.current();
    } catch (err) {
      await session.close().catch(() => {});
      throw err;
    }
    return new Etcd(resolved, client, session);
  }

  /** A handle on the lock `name` (no I/O until it locks). Throws `InvalidOptionError` for bad options. */
  lock(name: string, options?: EtcdLockOptions): EtcdLock {
    return new EtcdLock(this.#keys, checkName(name), options);
  }

  /** Runs `fn` under the exclusive lock `name` (see {@link EtcdLock.withLock}). */
  withWriteLock<T>(name: string, fn: () => T | Promise<T>, options?: EtcdLockOptions): Promise<T> {
    return this.lock(name, { ...options, type: 'exclusive' }).withLock(fn);
  }

  /** Runs `fn` under the shared lock `name` (see {@link EtcdLock.withLock}). */
  withReadLock<T>(name: string, fn: () => T | Promise<T>, options?: EtcdLockOptions): Promise<T> {
    return this.lock(name, { ...options, type: 'shared' }).withLock(fn);
  }

  /**
   * Opens the machine registry `name` kept in this cluster (under `<prefix>registry/<name>/`): reads it
   * whole and watches it. Rejects with `InvalidOptionError`, or `EtcdUnavailableError` if etcd does not
   * answer within `callTimeout`. See {@link EtcdMachineRegistry} and docs/etcd.md.
   */
  async registry(name: string, options?: EtcdRegistryOptions): Promise<EtcdMachineRegistry> {
    // Loaded here: the registry brings the connection module (and ssh2) that lock users do not need.
    const { EtcdMachineRegistry } = await import('./registry.js');
    const registry = await EtcdMachineRegistry.open(
      {
        client: this.#client,
        session: this.#session,
        prefix: this.prefix,
        onClose: (r) => this.#registries.delete(r),
      },
      name,
      options,
    );
    this.#registries.add(registry);
    return registry;
  }

  /**
   * Closes every registry this Etcd opened, then revokes the session lease, which releases every lock
   * this Etcd holds at once (their `lost` signals abort), fails every wait with `EtcdUnavailableError`,
   * and closes the connections. Idempotent. Rejects with `EtcdUnavailableError` if the revoke could not
   * reach etcd (the locks are then released when the lease expires, within `leaseTtl` seconds); the
   * connections are closed either way.
   */
  async close(): Promise<void> {
    for (const registry of [...this.#registries]) await registry.close();
    return this.#session.close();
  }

  /** Alias of `close()`, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
