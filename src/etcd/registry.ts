/**
 * EtcdMachineRegistry: the machine registry on etcd, for towns that span hosts. The same `Registry` as
 * MachineRegistry (methods, results, errors, group commit, invalid entries and unknown fields kept); only
 * the store differs (_registry-document.ts).
 *
 * Guarantees
 * - add() and remove() are linearizable, and those of different machines never conflict, from any
 *   number of processes and hosts. update() is serializable: its callback sees one revision of the whole
 *   registry, and its changes commit only if nothing changed since; otherwise it runs again on fresh
 *   state, so **the callback may run more than once** (keep it free of other side effects).
 * - Every acknowledged write is committed exactly once, also when a leader dies while it is in flight.
 * - No transaction exceeds etcd's --max-txn-ops (the `maxTxnOps` option of Etcd.connect()): concurrent
 *   writes are split into several transactions, in order, each write atomic; one write that needs more
 *   fails alone with ERR_ETCD_TXN_TOO_LARGE and nothing of it is applied.
 * - Reads are synchronous and read-your-writes; they never go back to an older revision; others' writes
 *   arrive through a watch (milliseconds later). reload() is linearizable.
 *
 * Not guaranteed
 * - That reads show others' writes at once: call reload() first when that matters.
 * - An update() racing a machine deleted by hand (etcdctl del, without rewriting the epoch key).
 */
import { InvalidOptionError } from '../errors.js';
import { RegistryBase } from '../registry/registry.js';
import type { EtcdClient } from './_client.js';
import { EtcdDocument } from './_registry-document.js';
import { RegistryKeys } from './_registry-keys.js';
import type { Session } from './_session.js';
import { checkName } from './options.js';

/** Options for {@link Etcd.registry}. */
export interface EtcdRegistryOptions {
  /**
   * How long a write keeps retrying after conflicts with other writers, in ms (the etcd counterpart of
   * MachineRegistry's lock wait): past it the write fails with ERR_LOCK_TIMEOUT. `0` retries forever;
   * a negative value makes one attempt. @default 30000
   */
  lockTimeout?: number;
}

/** What the registry needs from its Etcd. */
export interface RegistryContext {
  client: EtcdClient;
  session: Session;
  prefix: string;
  /** Called once when the registry closes. */
  onClose: (registry: EtcdMachineRegistry) => void;
}

/** The machine registry `name` on etcd; get one from `etcd.registry(name)`. Implements {@link Registry}. */
export class EtcdMachineRegistry extends RegistryBase {
  /** The registry's name, as given. */
  readonly name: string;
  /** Where it is, for messages: `etcd://<endpoints>/<prefix>registry/<name>/`. */
  readonly location: string;
  readonly #doc: EtcdDocument;
  readonly #onClose: (registry: EtcdMachineRegistry) => void;
  #closed = false;

  private constructor(name: string, doc: EtcdDocument, onClose: (registry: EtcdMachineRegistry) => void) {
    // Batches are cut to what one etcd transaction takes (--max-txn-ops).
    super(doc, doc.location, undefined, (draft, batch) =>
      doc.tooLarge(draft.changes(), batch.readsAll || batch.failed),
    );
    this.name = name;
    this.location = doc.location;
    this.#doc = doc;
    this.#onClose = onClose;
  }

  /** @internal Use `etcd.registry(name, options)`. Reads the registry and starts watching it. */
  static async open(
    context: RegistryContext,
    name: string,
    options: EtcdRegistryOptions = {},
  ): Promise<EtcdMachineRegistry> {
    checkName(name);
    if (options === null || typeof options !== 'object')
      throw new InvalidOptionError('options', options, 'an object');
    const { lockTimeout = 30_000 } = options;
    if (typeof lockTimeout !== 'number' || Number.isNaN(lockTimeout))
      throw new InvalidOptionError('lockTimeout', lockTimeout, 'a number of ms');
    const { client, session, prefix } = context;
    const keys = new RegistryKeys(prefix, name);
    const endpoints = client.endpoints.join(',');
    const doc = await EtcdDocument.open({
      client,
      session,
      keys,
      location: `etcd://${endpoints}/${keys.root}`,
      identity: `etcd:${[...client.endpoints].sort().join(',')}/${keys.root}`,
      lockTimeout: lockTimeout === Number.POSITIVE_INFINITY ? 0 : lockTimeout,
    });
    return new EtcdMachineRegistry(name, doc, context.onClose);
  }

  /**
   * Stops watching the registry. Reads then serve the last snapshot; writes and reload() fail with
   * ERR_ETCD_UNAVAILABLE. Idempotent; `etcd.close()` closes every registry it opened.
   */
  override async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#doc.close();
    this.#onClose(this);
  }

  /** Alias of `close()`, for `await using`. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
