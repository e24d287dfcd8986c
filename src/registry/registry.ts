/**
 * MachineRegistry: the machines file many processes share, without lost updates.
 *
 * This file is validation and the Go format on top of a store; the store gives the guarantees:
 * - Writes are serializable: each batch is reload -> change -> atomic write under the exclusive lock of
 *   the real file (symlinks resolved: every spelling of the path shares one lock), so a change made by
 *   any process is never lost, and an acknowledged write (the promise resolved) is durable.
 * - Memory is a sequence of immutable committed snapshots: a batch works on its own draft and its result
 *   is swapped in only after the rename; reload() and reads only ever swap in a whole newer snapshot.
 *   Nothing an unfinished or failed write did is ever visible, and no reload can undo a commit.
 * - Reads take no lock and are synchronous: a stat says whether the file changed (bytes are compared
 *   when its fingerprint is ambiguous), so they are never older than the last write that finished before
 *   the read began.
 * - Group commit: concurrent writes in one process are applied in arrival order in one locked
 *   read-modify-write and one fsync; each caller gets its own result or error.
 * - A write from inside an update() callback of the same file fails with ERR_REGISTRY_REENTRANT; a write
 *   made while the caller holds withWriteLock(path) commits under that hold.
 * - A corrupt or newer-version file is never overwritten; machine entries that fail validation are kept
 *   as written but not served (get() names the problem, invalid() lists them).
 */
import { resolve } from 'node:path';
import type { Connection } from '../connection/connection.js';
import { ConnectionError } from '../connection/errors.js';
import { LocalConnection } from '../connection/local.js';
import { SshConnection, type SshConnectionOptions } from '../connection/ssh.js';
import { InvalidOptionError } from '../errors.js';
import { DEFAULT_TIMEOUT } from '../filelock/options.js';
import type { DocumentStore } from '../store/_document.js';
import { FileDocument } from '../store/_file-document.js';
import { type BatchSoFar, GroupCommit } from '../store/_group-commit.js';
import { UpdateTimeoutError } from '../store/errors.js';
import {
  beginDraft,
  type EntryDraft,
  invalidEntries,
  machineOf,
  type RegistryBatchDraft,
  type RegistryDraft,
  sortedMachines,
} from './_draft.js';
import {
  type Entry,
  emptyState,
  parseRegistry,
  parseRegistryAsync,
  type RegistryState,
  serializeRegistry,
  serializeRegistryAsync,
} from './_format.js';
import {
  type InvalidMachineError,
  LocalMachineError,
  RegistryIoError,
  RegistryReentrantError,
} from './errors.js';
import { type Machine, validateMachine } from './machine.js';

export type { RegistryDraft };

/** What every registry offers, whatever stores it: MachineRegistry (a file) and the etcd registry. */
export interface Registry {
  /** The machine named `name`; MachineNotFoundError, or InvalidMachineError for an entry that is not valid. */
  get(name: string): Machine;
  /** Whether a valid machine named `name` exists. */
  has(name: string): boolean;
  /** All valid machines, sorted by name. */
  list(): Machine[];
  /** The entries kept as written but not served, each with the reason (machine name and field). */
  invalid(): InvalidMachineError[];
  /** Adds `machine`, or replaces the machine of that name (its unknown fields are kept). */
  add(machine: Machine): Promise<void>;
  /** Removes the machine named `name` (an invalid entry too); `local` cannot be removed. */
  remove(name: string): Promise<void>;
  /** Runs `fn` on a draft of the latest registry and commits its changes atomically; returns `fn`'s result. */
  update<T>(fn: (draft: RegistryDraft) => T | Promise<T>): Promise<T>;
  /** Re-reads the registry now; afterwards reads are at least as new as any write committed before. */
  reload(): Promise<void>;
  /** A connection to the machine named `name` (LocalConnection or SshConnection). */
  connection(name: string, options?: Partial<SshConnectionOptions>): Connection;
  /** A connection to this machine. */
  localConnection(options?: { tmuxSocket?: string }): LocalConnection;
  /** Releases what the registry holds (the etcd registry's watch); the file registry holds nothing. */
  close(): Promise<void>;
}

/** Options for {@link MachineRegistry.open}. */
export interface RegistryOptions {
  /** How long a write waits for the file lock, in ms (see FileLock `timeout`). @default 30000 */
  lockTimeout?: number;
  /** Directory for the lock file. @default `<dirname(real path)>/.gastown/locks` */
  lockDir?: string;
  /** fsync each write (file and directory). Turn off only for throwaway data. @default true */
  fsync?: boolean;
}

/**
 * The registry logic over any store of {@link RegistryState}: validation, the draft, reads from the
 * committed snapshot. MachineRegistry gives it a file; the etcd registry gives it etcd.
 */
export class RegistryBase implements Registry {
  readonly #store: DocumentStore<RegistryState>;
  readonly #writes: GroupCommit<RegistryState, RegistryDraft, RegistryBatchDraft>;

  /**
   * `label` names the registry in errors; `callbackTimeout` bounds update() callbacks (ms, 0: none);
   * `tooLarge` bounds a batch, for a store that cannot commit any size (see GroupCommitConfig).
   */
  protected constructor(
    store: DocumentStore<RegistryState>,
    label: string,
    callbackTimeout = DEFAULT_TIMEOUT,
    tooLarge?: (draft: RegistryBatchDraft, batch: BatchSoFar) => Error | undefined,
  ) {
    this.#store = store;
    this.#writes = new GroupCommit({
      identity: () => store.identity,
      begin: (base) => beginDraft(base, label),
      callbackTimeout,
      timedOut: (ms) => new UpdateTimeoutError(label, ms),
      commit: (apply) => store.commit(apply),
      tooLarge,
      reentrant: () => new RegistryReentrantError(label),
      heldByCaller: store.heldByCaller && (() => store.heldByCaller!()),
    });
    transfers.set(this, {
      state: () => store.read().state,
      change: (fn) =>
        this.#writes.submit((_view, draft) => {
          const entries = draft as EntryDraft; // beginDraft's drafts
          return fn(entries.entries(), entries.putEntry);
        }, true),
    });
  }

  get(name: string): Machine {
    return machineOf(this.#entries(), checkName(name));
  }

  has(name: string): boolean {
    return this.#entries().get(checkName(name))?.valid === true;
  }

  list(): Machine[] {
    return sortedMachines(this.#entries());
  }

  invalid(): InvalidMachineError[] {
    return invalidEntries(this.#entries());
  }

  async add(machine: Machine): Promise<void> {
    const clean = validateMachine(machine);
    if (clean.name === 'local' && clean.type !== 'local')
      throw new LocalMachineError('changed to another type');
    await this.#writes.submit((draft) => draft.add(clean), false);
  }

  async remove(name: string): Promise<void> {
    checkName(name);
    if (name === 'local') throw new LocalMachineError('removed');
    await this.#writes.submit((draft) => draft.remove(name), false);
  }

  /**
   * Runs `fn` on the latest registry under the write lock and saves its changes atomically; returns
   * `fn`'s result. If `fn` throws, its changes are discarded and only this call fails. Inside `fn`, use
   * the draft: the registry's own reads still show the last committed state, and its writes fail with
   * ERR_REGISTRY_REENTRANT.
   */
  update<T>(fn: (draft: RegistryDraft) => T | Promise<T>): Promise<T> {
    if (typeof fn !== 'function') return Promise.reject(new InvalidOptionError('fn', fn, 'a function'));
    return this.#writes.submit((draft) => fn(draft), true);
  }

  async reload(): Promise<void> {
    await this.#store.reload();
  }

  /**
   * A connection to the machine named `name`: LocalConnection for `local`, SshConnection (host and key
   * from the registry; `options` for known_hosts, passphrase, tmux socket...) for `ssh`. Connecting is
   * lazy: errors surface on the first operation. The caller closes it.
   */
  connection(name: string, options: Partial<SshConnectionOptions> = {}): Connection {
    if (options === null || typeof options !== 'object')
      throw new InvalidOptionError('options', options, 'an object');
    const machine = this.get(name);
    if (machine.type === 'local')
      return new LocalConnection({ name: machine.name, tmuxSocket: options.tmuxSocket });
    if (machine.type === 'ssh') {
      return new SshConnection({
        ...options,
        name: machine.name,
        host: machine.host!,
        keyPath: options.keyPath ?? machine.keyPath,
      });
    }
    throw new ConnectionError(
      machine.name,
      'connect',
      'unsupported',
      `machine type ${JSON.stringify(machine.type)} is not supported`,
    );
  }

  localConnection(options: { tmuxSocket?: string } = {}): LocalConnection {
    if (options === null || typeof options !== 'object')
      throw new InvalidOptionError('options', options, 'an object');
    return new LocalConnection({ name: 'local', tmuxSocket: options.tmuxSocket });
  }

  async close(): Promise<void> {}

  /** The committed machines, refreshed first if the store changed. */
  #entries() {
    return this.#store.read().state.entries;
  }
}

/**
 * What `machine import` and `machine export` reach beneath the public API: the committed state, and a
 * write batch that copies whole entries (unknown fields and invalid entries kept as they are).
 */
export interface RegistryTransfer {
  /** The committed state (refreshed first if the store changed). */
  state(): RegistryState;
  /** Runs `fn` on the latest entries in one write batch, as update() does; `put` replaces or removes. */
  change<T>(
    fn: (entries: ReadonlyMap<string, Entry>, put: (name: string, entry: Entry | undefined) => void) => T,
  ): Promise<T>;
}

const transfers = new WeakMap<RegistryBase, RegistryTransfer>();

/** The transfer access of a registry (not exported from the package). */
export function transferOf(registry: RegistryBase): RegistryTransfer {
  return transfers.get(registry)!;
}

/** The machines registry stored in one file, in the Go tool's format. */
export class MachineRegistry extends RegistryBase {
  /** The registry file, absolute (as given; writes go to the file it names, through symlinks). */
  readonly path: string;

  private constructor(path: string, store: FileDocument<RegistryState>, lockTimeout: number) {
    super(store, path, lockTimeout);
    this.path = path;
  }

  /**
   * Opens the registry at `path` and reads it. A missing file reads as just `local`; nothing is created
   * until a write. A corrupt or newer-version file fails here (and never gets overwritten).
   */
  static async open(path: string, options: RegistryOptions = {}): Promise<MachineRegistry> {
    if (typeof path !== 'string' || path === '')
      throw new InvalidOptionError('path', path, 'a non-empty string');
    if (options === null || typeof options !== 'object')
      throw new InvalidOptionError('options', options, 'an object');
    const { lockTimeout, lockDir, fsync = true } = options;
    if (typeof fsync !== 'boolean') throw new InvalidOptionError('fsync', fsync, 'a boolean');
    const abs = resolve(path);
    const store = new FileDocument<RegistryState>(
      abs,
      {
        empty: emptyState,
        parse: (bytes, where, previous, previousBytes) =>
          parseRegistry(bytes, where, previous, { previousBytes }),
        parseAsync: (bytes, where, previous, previousBytes) =>
          parseRegistryAsync(bytes, where, previous, { previousBytes }),
        serialize: serializeRegistry,
        serializeAsync: serializeRegistryAsync,
      },
      { io: (p, action, cause) => new RegistryIoError(p, action, cause) },
      { lockTimeout, lockDir, fsync },
    );
    const registry = new MachineRegistry(abs, store, lockTimeout ?? DEFAULT_TIMEOUT);
    await store.load();
    return registry;
  }
}

/** `name` if it is a string; anything else is ERR_INVALID_OPTION (a BigInt would not even print). */
function checkName(name: unknown): string {
  if (typeof name !== 'string') throw new InvalidOptionError('name', name, 'a machine name (a string)');
  return name;
}
