/**
 * A document kept in one file and shared by many processes: the file half of every store.
 *
 * Snapshots: memory holds the last committed version as an immutable snapshot (state, the exact bytes
 * it came from, the file's fingerprint). Readers only ever get a whole snapshot; a writer builds its next
 * state on its own draft and the snapshot is swapped only after the rename succeeded. Nothing a failed or
 * unfinished write did is ever visible.
 *
 * Freshness: a read stats the file. The fingerprint (device, inode, size, mtime and ctime in ns) says
 * whether it changed, except when it is ambiguous: file systems stamp times with a coarse clock and reuse
 * freed inodes, so a file replaced within the same clock tick can keep every field. A fingerprint seen
 * less than a safety margin after its ctime is therefore "racy" (git's term) and the bytes are compared
 * instead. Once the bytes were confirmed after the margin, any later replacement must carry a newer ctime.
 *
 * Writes: under the exclusive lock of the file (lock identity follows symlinks to the file that is
 * actually replaced): refresh, apply, then, if anything changed, atomic replace (temp file, fsync, rename,
 * directory fsync) and publish. Directories created for the file are fsynced into their parents. Temp
 * files of writers that died are removed. A file that does not parse is never overwritten.
 */
import fs from 'node:fs';
import { removeStaleTempFiles, writeFileAtomic } from '../atomic/pending-file.js';
import { heldInContext } from '../filelock/_holds.js';
import { resolveLockTarget } from '../filelock/_target.js';
import { FileLock } from '../filelock/lock.js';
import { type FileLockOptions, resolveLockOptions } from '../filelock/options.js';
import type { DocumentStore, Snapshot } from './_document.js';
import type { ApplyBatch } from './_group-commit.js';
import { withTargetWriteLock } from './_target-lock.js';

/** How a document's state is read from and written to bytes. */
export interface Codec<S> {
  /** The state of a file that does not exist yet. */
  empty(): S;
  /**
   * Parses the file; throws the layer's corrupt error, never returns partial state. `previous` is the
   * state the file had before, and `previousBytes` the bytes it was read from or written as (undefined:
   * no file), which a codec may reuse for what did not change.
   */
  parse(bytes: Buffer, path: string, previous: S, previousBytes: Buffer | undefined): S;
  /** The same, yielding to the event loop between pieces of work; used by open() and reload(). */
  parseAsync?(bytes: Buffer, path: string, previous: S, previousBytes: Buffer | undefined): Promise<S>;
  /** The file's new content. */
  serialize(state: S): string | Buffer;
  /** The same, yielding to the event loop between pieces of work; used for writes when given. */
  serializeAsync?(state: S): Promise<string | Buffer>;
}

/** The errors a layer reports in its own codes. */
export interface DocumentErrors {
  /** An OS error (or a non-regular file) while reading or writing. */
  io(path: string, action: 'read' | 'write', cause: NodeJS.ErrnoException | string): Error;
}

/** Options of a file document. */
export interface FileDocumentOptions {
  /** How long a write waits for the lock, in ms. */
  lockTimeout?: number;
  /** Directory of the lock file. */
  lockDir?: string;
  /** fsync file and directory on every write. */
  fsync: boolean;
}

/** One committed version of the document, with the file's bytes it came from (undefined: no file). */
export interface FileSnapshot<S> extends Snapshot<S> {
  readonly bytes: Buffer | undefined;
}

/** A file version read but not parsed yet. */
interface Fresh {
  bytes: Buffer;
  fingerprint: Fingerprint;
  /** When it was read (Date.now()). */
  now: number;
}

/** Device, inode, size and times (ns) of one version of the file. */
interface Fingerprint {
  dev: bigint;
  ino: bigint;
  size: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
}

/** What memory knows about the file: the snapshot, the fingerprint it matches and when that was seen. */
interface Known<S> {
  snapshot: FileSnapshot<S>;
  fingerprint: Fingerprint | undefined;
  /** When (Date.now()) the bytes were last confirmed to match the file with this fingerprint. */
  confirmedAt: number;
}

/**
 * Margin for ambiguous fingerprints, in ms: above the clock tick of local file systems (1-10 ms); file
 * systems with whole-second times (ns part 0) get COARSE_MARGIN.
 */
const MARGIN = 50;
const COARSE_MARGIN = 2_100;
// Never follow a planted FIFO into a blocking open; the type check after fstat refuses it.
const READ_FLAGS = fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0);

/** A document stored in the file at `path`. */
export class FileDocument<S> implements DocumentStore<S> {
  readonly path: string;
  readonly #codec: Codec<S>;
  readonly #errors: DocumentErrors;
  readonly #lockOptions: FileLockOptions;
  readonly #fsync: boolean;
  #known: Known<S>;
  #generation = 0;

  constructor(path: string, codec: Codec<S>, errors: DocumentErrors, options: FileDocumentOptions) {
    this.path = path;
    this.#codec = codec;
    this.#errors = errors;
    this.#lockOptions = { timeout: options.lockTimeout, lockDir: options.lockDir };
    resolveLockOptions(this.#lockOptions); // bad lockTimeout/lockDir fail at open, not at the first write
    try {
      resolveLockTarget(path, options.lockDir); // a symlink loop fails at open too
    } catch (err) {
      throw this.#wrap('read', err);
    }
    this.#fsync = options.fsync;
    this.#known = {
      snapshot: { state: codec.empty(), bytes: undefined },
      fingerprint: undefined,
      confirmedAt: 0,
    };
  }

  /** The lock identity of the file (symlinks resolved), as the group commit and re-entry checks use it. */
  get identity(): string {
    return this.#target('write').key;
  }

  /** True when the current async context holds this file's lock (a write then commits under it). */
  heldByCaller(): boolean {
    return heldInContext(this.identity) !== undefined;
  }

  /** The latest committed snapshot, re-read first if the file changed (synchronous). */
  read(): FileSnapshot<S> {
    return this.#refresh(false);
  }

  /** Re-reads the file under its shared lock: no writer is half way, so the result is the latest. */
  async reload(): Promise<FileSnapshot<S>> {
    return this.withReadLock(() => this.#refreshAsync(true));
  }

  /** The first read, at open: like read(), but a big file is parsed without blocking the event loop long. */
  async load(): Promise<FileSnapshot<S>> {
    return this.#refreshAsync(false);
  }

  /** Runs one batch under the exclusive lock and publishes its result (see the module comment). */
  async commit(apply: ApplyBatch<S>): Promise<void> {
    await this.withWriteLock(async (target) => {
      const base = this.readLocked(false, target);
      const { next, changed } = await apply(base.state);
      if (changed) await this.writeLocked(next, target);
    });
  }

  /**
   * Runs `fn` under the exclusive lock of the file `path` names now, with that file's real path. The
   * file's directory is created (durably) first: the lock's own directory lives inside it. If a symlinked
   * path was pointed elsewhere while we waited, the lock is given back and the new target locked: reading
   * one file and writing another would lose data. For composite stores too (the queue and its leases).
   */
  async withWriteLock<T>(fn: (target: string) => Promise<T>): Promise<T> {
    try {
      return await withTargetWriteLock(
        this.path,
        this.#lockOptions,
        this.#fsync,
        () => this.#target('write').path,
        fn,
      );
    } catch (err) {
      // OS errors of the lock itself too: a lockDir that is a file, a lock name too long.
      throw this.#wrap('write', err);
    }
  }

  /** Runs `fn` under the file's shared lock (reload(); composite stores re-read several files under it). */
  async withReadLock<T>(fn: () => T | Promise<T>): Promise<T> {
    try {
      return await new FileLock(this.path, { ...this.#lockOptions, type: 'shared' }).withLock(fn);
    } catch (err) {
      throw this.#wrap('read', err);
    }
  }

  /**
   * The latest committed snapshot; call only while holding this file's lock (no writer can be half way).
   * `force` re-reads and compares the bytes whatever the fingerprint says; `target` is the real file to
   * read (the one the lock protects) when a symlink could have been retargeted since.
   */
  readLocked(force = false, target: string = this.path): FileSnapshot<S> {
    return this.#refresh(force, target);
  }

  /**
   * Writes `next` to `target` (the real file: the write lock's path) atomically and publishes it; skips
   * the write when the bytes would not change. Call only while holding the write lock. True if it wrote.
   */
  async writeLocked(next: S, target: string): Promise<boolean> {
    const { serializeAsync } = this.#codec;
    const bytes = toBuffer(serializeAsync ? await serializeAsync(next) : this.#codec.serialize(next));
    if (this.#known.snapshot.bytes?.equals(bytes)) {
      this.#setKnown({ ...this.#known, snapshot: { state: next, bytes: this.#known.snapshot.bytes } });
      return false;
    }
    try {
      // Under the lock no other townlock writer is active; temp files of dead writers are garbage.
      await removeStaleTempFiles(target);
      // A new file is 0o644 less the umask, as the Go tool (and fs.writeFile) would create it: state
      // shared in a town is readable by its other users. An existing file keeps its mode.
      await writeFileAtomic(target, bytes, { fsync: this.#fsync }, 0o644);
    } catch (err) {
      throw this.#wrap('write', err);
    }
    const written = fs.statSync(target, { bigint: true, throwIfNoEntry: false });
    this.#setKnown({
      snapshot: { state: next, bytes },
      fingerprint: written && fingerprintOf(written),
      confirmedAt: Date.now(),
    });
    return true;
  }

  /** Swaps in the file's current version if it differs from the known one (or always checks, with `force`). */
  #refresh(force: boolean, path: string = this.path): FileSnapshot<S> {
    const found = this.#look(force, path);
    if ('snapshot' in found) return found.snapshot;
    const { state, bytes } = this.#known.snapshot;
    return this.#publish(found, this.#codec.parse(found.bytes, this.path, state, bytes));
  }

  /**
   * #refresh, parsing with the codec's asynchronous parser when it has one (for open() and reload(), so a
   * big file does not block the event loop in one piece). A newer snapshot published meanwhile by a
   * synchronous read wins over this one.
   */
  async #refreshAsync(force: boolean, path: string = this.path): Promise<FileSnapshot<S>> {
    const found = this.#look(force, path);
    if ('snapshot' in found) return found.snapshot;
    const { parseAsync } = this.#codec;
    const previous = this.#known.snapshot;
    if (!parseAsync)
      return this.#publish(found, this.#codec.parse(found.bytes, this.path, previous.state, previous.bytes));
    const generation = this.#generation;
    const state = await parseAsync(found.bytes, this.path, previous.state, previous.bytes);
    return generation === this.#generation ? this.#publish(found, state) : this.#known.snapshot;
  }

  /** What the file holds now: the known snapshot if it did not change, else its bytes to parse. */
  #look(force: boolean, path: string): { snapshot: FileSnapshot<S> } | Fresh {
    let st: fs.BigIntStats | undefined;
    try {
      st = fs.statSync(path, { bigint: true, throwIfNoEntry: false });
    } catch (err) {
      throw this.#wrap('read', err);
    }
    const known = this.#known;
    if (!st) {
      if (known.snapshot.bytes !== undefined || force) this.#setKnown(this.#empty());
      return { snapshot: this.#known.snapshot };
    }
    if (!st.isFile()) throw this.#errors.io(this.path, 'read', notRegular(st));
    const fingerprint = fingerprintOf(st);
    if (!force && known.fingerprint && sameFingerprint(known.fingerprint, fingerprint) && !racy(known)) {
      return { snapshot: known.snapshot };
    }
    const now = Date.now();
    const { bytes, fingerprint: read } = this.#readFile(path);
    if (known.snapshot.bytes?.equals(bytes)) {
      this.#setKnown({ snapshot: known.snapshot, fingerprint: read, confirmedAt: now });
      return { snapshot: known.snapshot };
    }
    return { bytes, fingerprint: read, now };
  }

  /** Swaps in the snapshot parsed from `fresh`. */
  #publish(fresh: Fresh, state: S): FileSnapshot<S> {
    this.#setKnown({
      snapshot: { state, bytes: fresh.bytes },
      fingerprint: fresh.fingerprint,
      confirmedAt: fresh.now,
    });
    return this.#known.snapshot;
  }

  /** Every change of what memory knows goes through here, counted for #refreshAsync. */
  #setKnown(known: Known<S>): void {
    this.#known = known;
    this.#generation++;
  }

  /** Memory for a missing file. */
  #empty(): Known<S> {
    return {
      snapshot: { state: this.#codec.empty(), bytes: undefined },
      fingerprint: undefined,
      confirmedAt: 0,
    };
  }

  /** Reads the whole file through one descriptor, with the fingerprint of exactly what was read. */
  #readFile(path: string): { bytes: Buffer; fingerprint: Fingerprint } {
    let fd: number;
    try {
      fd = fs.openSync(path, READ_FLAGS);
    } catch (err) {
      throw this.#wrap('read', err);
    }
    try {
      const st = fs.fstatSync(fd, { bigint: true });
      if (!st.isFile()) throw this.#errors.io(this.path, 'read', notRegular(st));
      // One more byte than the size, to notice a file that grew while we read; grows further if needed.
      let buf = Buffer.allocUnsafe(Number(st.size) + 1);
      let length = 0;
      for (;;) {
        if (length === buf.length) {
          const bigger = Buffer.allocUnsafe(buf.length * 2);
          buf.copy(bigger, 0, 0, length);
          buf = bigger;
        }
        const n = fs.readSync(fd, buf, length, buf.length - length, null);
        if (n === 0) break;
        length += n;
      }
      return { bytes: buf.subarray(0, length), fingerprint: fingerprintOf(st) };
    } catch (err) {
      throw this.#wrap('read', err);
    } finally {
      fs.closeSync(fd);
    }
  }

  /** The lock target of the path now (symlinks resolved); a symlink loop is the layer's IO error. */
  #target(action: 'read' | 'write') {
    try {
      return resolveLockTarget(this.path, this.#lockOptions.lockDir);
    } catch (err) {
      throw this.#wrap(action, err);
    }
  }

  /** OS errors become the layer's IO error; the layer's own errors pass through. */
  #wrap(action: 'read' | 'write', err: unknown): unknown {
    const code = (err as NodeJS.ErrnoException)?.code;
    return typeof code === 'string' && code.startsWith('E') && !code.startsWith('ERR_')
      ? this.#errors.io(this.path, action, err as NodeJS.ErrnoException)
      : err;
  }
}

/** The identifying fields of a stat. */
function fingerprintOf(st: fs.BigIntStats): Fingerprint {
  return { dev: st.dev, ino: st.ino, size: st.size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs };
}

/** Whether two fingerprints are field for field the same. */
function sameFingerprint(a: Fingerprint, b: Fingerprint): boolean {
  return (
    a.dev === b.dev &&
    a.ino === b.ino &&
    a.size === b.size &&
    a.mtimeNs === b.mtimeNs &&
    a.ctimeNs === b.ctimeNs
  );
}

/**
 * Whether an unchanged fingerprint could still hide a replacement: the bytes were last confirmed less
 * than a clock margin after the file's ctime, so a replacement in the same tick would look identical.
 */
function racy(known: Known<unknown>): boolean {
  const ctimeNs = known.fingerprint!.ctimeNs;
  const coarse = ctimeNs % 1_000_000_000n === 0n;
  const ctimeMs = Number(ctimeNs / 1_000_000n);
  return known.confirmedAt - ctimeMs < (coarse ? COARSE_MARGIN : MARGIN);
}

/** Why a path that is not a regular file cannot be the document. */
function notRegular(st: fs.BigIntStats): string {
  return st.isDirectory() ? 'it is a directory' : 'it is not a regular file (a FIFO, socket or device)';
}

/** Serialized content as bytes. */
function toBuffer(content: string | Buffer): Buffer {
  return typeof content === 'string' ? Buffer.from(content) : content;
}
