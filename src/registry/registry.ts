/**
 * MachineRegistry: the machines file many processes share, without lost updates.
 *
 * Consistency model
 * - Writes are serializable: each is reload -> change -> atomic write under the exclusive file lock
 *   (`withWriteLock(path)`, lock file in `.gastown/locks/`), so a change made by any process is never lost,
 *   and an acknowledged write (the promise resolved) is durable (fsync of file and directory).
 * - Reads take no lock: the file is only ever replaced by rename, so a reader sees a whole version. Each
 *   read stats the file and re-parses it only when its fingerprint (inode, size, mtime, ctime) changed,
 *   so reads are cheap and never older than the last write that finished before the read began.
 * - Group commit: concurrent add/remove/update calls in one process are applied in arrival order in one
 *   locked read-modify-write and one fsync; each caller gets its own result or its own error.
 * - A corrupt or newer-version file is never overwritten: every write fails with the same error.
 */
import { mkdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { removeStaleTempFiles, writeFileAtomic } from '../atomic/pending-file.js';
import type { Connection } from '../connection/connection.js';
import { ConnectionError } from '../connection/errors.js';
import { LocalConnection } from '../connection/local.js';
import { SshConnection, type SshConnectionOptions } from '../connection/ssh.js';
import { InvalidOptionError } from '../errors.js';
import { withWriteLock } from '../filelock/lock.js';
import type { FileLockOptions } from '../filelock/options.js';
import { makeDraft, type RegistryDraft, sortedMachines } from './_draft.js';
import { emptyState, parseRegistry, type RegistryState, serializeRegistry } from './_format.js';

export type { RegistryDraft };

import { LocalMachineError, MachineNotFoundError, RegistryIoError } from './errors.js';
import { type Machine, validateMachine } from './machine.js';

/** Options for {@link MachineRegistry.open}. */
export interface RegistryOptions {
  /** How long a write waits for the file lock, in ms (see FileLock `timeout`). @default 30000 */
  lockTimeout?: number;
  /** Directory for the lock file. @default `<dirname(path)>/.gastown/locks` */
  lockDir?: string;
  /** fsync each write (file and directory). Turn off only for throwaway data. @default true */
  fsync?: boolean;
}

/** One queued write: the callback and how to answer its caller. */
interface PendingOp {
  fn: (draft: RegistryDraft) => unknown;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

/** The machines registry stored at one path. */
export class MachineRegistry {
  /** The registry file, absolute. */
  readonly path: string;
  readonly #lockOptions: FileLockOptions;
  readonly #fsync: boolean;
  #state: RegistryState;
  #fingerprint: string | undefined;
  /** The text the in-memory state was parsed from or serialized to; lets a reload skip re-parsing. */
  #text: string | undefined;
  #queue: PendingOp[] = [];
  #flushing = false;

  private constructor(path: string, options: RegistryOptions) {
    this.path = path;
    this.#lockOptions = { timeout: options.lockTimeout, lockDir: options.lockDir };
    this.#fsync = options.fsync ?? true;
    this.#state = emptyState();
  }

  /** Opens the registry at `path`. A missing file reads as just `local`; nothing is created until a write. */
  static async open(path: string, options: RegistryOptions = {}): Promise<MachineRegistry> {
    if (typeof path !== 'string' || path === '')
      throw new InvalidOptionError('path', path, 'a non-empty string');
    const registry = new MachineRegistry(resolve(path), options);
    registry.#refresh(true);
    return registry;
  }

  /** The machine named `name`; throws {@link MachineNotFoundError}. */
  get(name: string): Machine {
    this.#refresh(false);
    const stored = this.#state.machines.get(name);
    if (!stored) throw new MachineNotFoundError(name);
    return { ...stored.machine };
  }

  /** Whether a machine named `name` exists. */
  has(name: string): boolean {
    this.#refresh(false);
    return this.#state.machines.has(name);
  }

  /** All machines, sorted by name. */
  list(): Machine[] {
    this.#refresh(false);
    return sortedMachines(this.#state);
  }

  /** Adds `machine`, or replaces the machine of that name. Validates first (InvalidMachineError). */
  async add(machine: Machine): Promise<void> {
    const clean = validateMachine(machine);
    if (clean.name === 'local' && clean.type !== 'local')
      throw new LocalMachineError('changed to another type');
    await this.update((draft) => draft.add(clean));
  }

  /** Removes the machine named `name`; `local` cannot be removed (LocalMachineError). */
  async remove(name: string): Promise<void> {
    if (name === 'local') throw new LocalMachineError('removed');
    await this.update((draft) => draft.remove(name));
  }

  /**
   * Runs `fn` on the latest registry under the write lock and saves its changes atomically; returns
   * `fn`'s result. If `fn` throws, its changes are discarded and only this call fails.
   */
  update<T>(fn: (draft: RegistryDraft) => T | Promise<T>): Promise<T> {
    if (typeof fn !== 'function') return Promise.reject(new InvalidOptionError('fn', fn, 'a function'));
    return new Promise<T>((resolvePromise, reject) => {
      this.#queue.push({ fn, resolve: resolvePromise as (v: unknown) => void, reject });
      if (this.#flushing) return;
      this.#flushing = true;
      // Start on the next microtask, so every call made in this tick joins the same batch.
      queueMicrotask(() => void this.#flush());
    });
  }

  /**
   * A connection to the machine named `name`: LocalConnection for `local`, SshConnection (host and key
   * from the registry; `options` for known_hosts, passphrase, tmux socket...) for `ssh`. Connecting is
   * lazy: errors surface on the first operation. The caller closes it.
   */
  connection(name: string, options: Partial<SshConnectionOptions> = {}): Connection {
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

  /** A connection to this machine. */
  localConnection(options: { tmuxSocket?: string } = {}): LocalConnection {
    return new LocalConnection({ name: 'local', tmuxSocket: options.tmuxSocket });
  }

  /** Re-reads the file now, whatever its fingerprint says. */
  async reload(): Promise<void> {
    this.#refresh(true);
  }

  /** Applies queued writes in batches, one locked read-modify-write and one fsync per batch. */
  async #flush(): Promise<void> {
    while (this.#queue.length > 0) {
      const batch = this.#queue.splice(0);
      const outcomes: (() => void)[] = [];
      try {
        await withWriteLock(this.path, () => this.#commitBatch(batch, outcomes), this.#lockOptions);
        for (const settle of outcomes) settle();
      } catch (err) {
        const reason = wrapIo(this.path, 'write', err); // e.g. the lock directory cannot be created
        for (const op of batch) op.reject(reason);
      }
    }
    this.#flushing = false;
  }

  /** Under the lock: reload, apply each op with its own undo log, write once if anything changed. */
  async #commitBatch(batch: PendingOp[], outcomes: (() => void)[]): Promise<void> {
    this.#refresh(true);
    const state = this.#state;
    let changed = false;
    for (const op of batch) {
      const undo: (() => void)[] = [];
      try {
        const result = await op.fn(makeDraft(state, undo));
        changed ||= undo.length > 0;
        outcomes.push(() => op.resolve(result));
      } catch (err) {
        for (const step of undo.reverse()) step();
        outcomes.push(() => op.reject(err));
      }
    }
    if (!changed) return;
    this.#text = undefined; // memory is now ahead of the file until the rename succeeds
    const text = serializeRegistry(state);
    try {
      mkdirSync(dirname(this.path), { recursive: true });
      // Under the lock no other registry writer is active, so any temp file here is a crashed writer's.
      await removeStaleTempFiles(this.path);
      // The directory fsync stays inside the lock: measured, concurrent fsyncs from several writers slow
      // each other down more than the longer critical section costs (BENCHMARKS.md).
      await writeFileAtomic(this.path, text, { fsync: this.#fsync });
    } catch (err) {
      this.#fingerprint = undefined; // memory may now differ from the file: re-read on next access
      throw wrapIo(this.path, 'write', err);
    }
    this.#text = text;
    const written = statSync(this.path, { throwIfNoEntry: false });
    this.#fingerprint = written && fingerprintOf(written);
  }

  /** Re-reads the file if it changed since last read (or always, with `force`). */
  #refresh(force: boolean): void {
    let stat: ReturnType<typeof statSync>;
    try {
      stat = statSync(this.path, { throwIfNoEntry: false });
    } catch (err) {
      throw wrapIo(this.path, 'read', err);
    }
    if (!stat) {
      if (force || this.#fingerprint !== 'missing') this.#state = emptyState();
      this.#fingerprint = 'missing';
      this.#text = undefined;
      return;
    }
    const fingerprint = fingerprintOf(stat);
    if (!force && fingerprint === this.#fingerprint) return;
    let text: string;
    try {
      text = readFileSync(this.path, 'utf8');
    } catch (err) {
      throw wrapIo(this.path, 'read', err);
    }
    if (text !== this.#text) this.#state = parseRegistry(text, this.path);
    this.#text = text;
    this.#fingerprint = fingerprint;
  }
}

/** What identifies one version of the file without reading it: a rename changes the inode. */
function fingerprintOf(stat: { ino: number; size: number; mtimeMs: number; ctimeMs: number }): string {
  return `${stat.ino}:${stat.size}:${stat.mtimeMs}:${stat.ctimeMs}`;
}

/** Wraps OS errors in RegistryIoError; townlock errors pass through. */
function wrapIo(path: string, action: 'read' | 'write', err: unknown): unknown {
  const code = (err as NodeJS.ErrnoException)?.code;
  return typeof code === 'string' && code.startsWith('E') && !code.startsWith('ERR_')
    ? new RegistryIoError(path, action, err as NodeJS.ErrnoException)
    : err;
}
