/**
 * JsonlLog: an append-only log of JSON values, one per line, shared by any number of processes.
 *
 * - append() writes under the file's exclusive lock with O_APPEND and fsync; concurrent appends in one
 *   process are group-committed (one lock, one write(2), one fsync) and land in call order. An append
 *   resolves only when its lines are on disk; a new file's directory entry is fsynced too. The file the
 *   lock protects is resolved again once the lock is held: if a symlinked path was pointed elsewhere
 *   while we waited, the lock is given back and the new target's taken (as FileDocument does).
 * - A line torn by a crash (a last line without its newline, or a line that is not JSON) is never
 *   yielded and never silently dropped: readers report it with its byte offset (`onTorn`, or a
 *   LogTornError). The next append closes a torn last line with a NUL byte and a newline before its own
 *   entries (see #appendLocked), so the torn bytes stay a torn line forever, even when they happen to
 *   parse ("12" of "12345"), and cannot spoil new entries. Only repair() removes torn lines, moving their
 *   bytes to `<real file>.torn`.
 * - A reader that meets a last line still being written confirms under the shared lock whether it is
 *   really torn, so an append in progress is never reported as torn.
 * - watch() follows the file like `tail -F`, woken by file-change events (inotify on Linux, the same
 *   mechanism the lock uses; the directory's while the file does not exist), with a slow poll as a
 *   fallback. When the file is replaced (repair(), rotation by rename, delete and recreate) or rewritten
 *   in place (truncated below the watcher's position, or the bytes just before its position changed), the
 *   watcher starts again from offset 0 of what is there now.
 * - Only regular files: a FIFO, socket, device or directory at the path is refused (ERR_STORE_IO) before
 *   it is opened; one planted between that check and the open is opened without blocking (O_NONBLOCK)
 *   and refused before any byte is read or written.
 * Offsets are byte offsets; repair() rewrites the file, so offsets past the first torn line change.
 */
import fs from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { ops } from '../atomic/_fs-ops.js';
import { mkdirDurable } from '../atomic/_mkdir.js';
import { writeFileAtomic } from '../atomic/pending-file.js';
import { InvalidOptionError } from '../errors.js';
import { heldInContext } from '../filelock/_holds.js';
import { resolveLockTarget } from '../filelock/_target.js';
import { FileLock } from '../filelock/lock.js';
import { type ApplyBatch, GroupCommit } from './_group-commit.js';
import { lineOf, parseLine, splitLines } from './_jsonl.js';
import { withTargetWriteLock } from './_target-lock.js';
import { isOsError, LogTornError, StoreIoError, StoreReentrantError } from './errors.js';

const CHUNK = 64 * 1024;
/** How often watch() looks without an event (events can be lost, or absent on network file systems). */
const WATCH_POLL_MS = 1_000;
/** How many bytes before its position a watcher keeps, to notice the file rewritten in place. */
const MARK = 64;
/** Never block on a FIFO planted at the path; never make a terminal ours. */
const NONBLOCK = (fs.constants.O_NONBLOCK ?? 0) | (fs.constants.O_NOCTTY ?? 0);
const READ_FLAGS = fs.constants.O_RDONLY | NONBLOCK;
const APPEND_FLAGS = fs.constants.O_RDWR | fs.constants.O_APPEND | fs.constants.O_CREAT | NONBLOCK;
/**
 * What an append writes before its entries when the file does not end in a newline (a torn tail): a NUL
 * byte, which no JSON text may contain outside a string and JSON.parse refuses, then the newline. The
 * torn bytes are kept as they are, but can never parse as an entry afterwards ("12" torn from "12345"
 * would otherwise become the entry 12), so readers report the line as torn at its offset until repair().
 */
const CLOSE_TORN = '\u0000\n';

/** Options for {@link JsonlLog.open}. */
export interface JsonlLogOptions {
  /** fsync every append (and the directory when the file is created). @default true */
  fsync?: boolean;
  /** How long an append waits for the file lock, in ms. @default 30000 */
  lockTimeout?: number;
  /** Directory of the lock file. @default `<dir of the real file>/.gastown/locks` */
  lockDir?: string;
  /** Permission bits of a new log file (before umask). @default 0o644 */
  mode?: number;
}

/** One entry and where it is in the file. */
export interface LogEntry<T> {
  /** Byte offset of the entry's line. */
  offset: number;
  /** Byte offset just past it: where the next entry starts. */
  end: number;
  value: T;
}

/** A line that is not a whole JSON value. */
export interface TornLine {
  offset: number;
  end: number;
  /**
   * True for a last line without its newline (a crash while appending). Once an append has closed such a
   * line (with a NUL byte and a newline), it is an ordinary torn line: `tail` false, its text ending in
   * "\u0000".
   */
  tail: boolean;
  /** The line's bytes as text (replacement characters where they are not UTF-8). */
  text: string;
}

/** Options for reading and watching. */
export interface LogReadOptions {
  /**
   * Byte offset to start at: 0, or the `end` of an entry (a line start at or before the end of the file;
   * anything else is ERR_INVALID_OPTION). @default 0 (watch: the end of the last whole line)
   */
  from?: number;
  /** Called for each torn line instead of throwing LogTornError; reading goes on after it. */
  onTorn?: (torn: TornLine) => void;
  /** Ends a watch (the iterator finishes). */
  signal?: AbortSignal;
}

/** Where one append call's entries go: filled in by the commit. */
interface Slot {
  first: number;
  offset: number;
}

/** The lines one batch appends, and each call's slot among them. */
interface LogBatch {
  lines: string[];
  slots: Slot[];
}

/** An append-only JSON Lines file. */
export class JsonlLog<T> {
  /** The log file, absolute. */
  readonly path: string;
  readonly #fsync: boolean;
  readonly #lockOptions: { timeout?: number; lockDir?: string };
  readonly #mode: number;
  readonly #writes: GroupCommit<LogBatch, LogBatch>;

  private constructor(
    path: string,
    options: Required<Pick<JsonlLogOptions, 'fsync' | 'mode'>> & JsonlLogOptions,
  ) {
    this.path = path;
    this.#fsync = options.fsync;
    this.#mode = options.mode;
    this.#lockOptions = { timeout: options.lockTimeout, lockDir: options.lockDir };
    this.#writes = new GroupCommit<LogBatch, LogBatch>({
      identity: () => this.#target('write').key,
      begin: () => {
        const view: LogBatch = { lines: [], slots: [] };
        let marks = [0, 0];
        return {
          view,
          mark: () => {
            marks = [view.lines.length, view.slots.length];
          },
          rollback: () => {
            view.lines.length = marks[0]!;
            view.slots.length = marks[1]!;
          },
          finish: () => ({ next: view, changed: view.lines.length > 0 }),
        };
      },
      commit: (apply) => this.#commit(apply),
      reentrant: () => new StoreReentrantError(path),
      heldByCaller: () => heldInContext(this.#target('write').key) !== undefined,
    });
  }

  /** Opens the log at `path`; nothing is created until the first append. */
  static async open<T>(path: string, options: JsonlLogOptions = {}): Promise<JsonlLog<T>> {
    if (typeof path !== 'string' || path === '')
      throw new InvalidOptionError('path', path, 'a non-empty string');
    if (options === null || typeof options !== 'object')
      throw new InvalidOptionError('options', options, 'an object');
    const { fsync = true, mode = 0o644, lockTimeout, lockDir } = options;
    if (typeof fsync !== 'boolean') throw new InvalidOptionError('fsync', fsync, 'a boolean');
    if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777)
      throw new InvalidOptionError('mode', mode, 'file permission bits');
    const abs = resolve(path);
    let st: fs.Stats | undefined;
    try {
      new FileLock(path, { timeout: lockTimeout, lockDir }); // validates lockTimeout and lockDir now
      st = fs.statSync(path, { throwIfNoEntry: false });
    } catch (err) {
      throw isOsError(err) ? new StoreIoError(abs, 'read', err) : err;
    }
    if (st && !st.isFile()) throw new StoreIoError(abs, 'read', notRegular(st));
    return new JsonlLog<T>(abs, { fsync, mode, lockTimeout, lockDir });
  }

  /**
   * Appends `entry` (or each element of an array, in order) as one line each; resolves with the byte
   * offset of the first, once durable. To append an array as a single entry, wrap it: `append([arr])`.
   */
  async append(entry: T | readonly T[]): Promise<number> {
    const values = Array.isArray(entry) ? entry : [entry];
    const lines = values.map((v, i) => {
      try {
        return lineOf(v);
      } catch (err) {
        throw new InvalidOptionError(
          Array.isArray(entry) ? `entry[${i}]` : 'entry',
          v,
          `a JSON value (${(err as Error).message})`,
        );
      }
    });
    const slot = await this.#writes.submit((view): Slot => {
      const slot = { first: view.lines.length, offset: -1 };
      view.lines.push(...lines);
      view.slots.push(slot);
      return slot;
    }, false);
    return slot.offset;
  }

  /** The entries' values, in order, from `from`; torn lines are reported (see LogReadOptions). */
  async *read(options: LogReadOptions = {}): AsyncGenerator<T> {
    for await (const e of this.entries(options)) yield e.value;
  }

  /** The entries with their offsets, in order, from `from`. */
  async *entries(options: LogReadOptions = {}): AsyncGenerator<LogEntry<T>> {
    const { from = 0, onTorn } = checkRead(options);
    const opened = await this.#openForRead();
    if (!opened) {
      if (from > 0) throw badFrom(from, this.path, 0);
      return;
    }
    const { handle, size } = opened;
    try {
      await checkBoundary(handle, from, size, this.path);
      const reader = new LineReader(handle, from);
      for (;;) {
        const line = await reader.next();
        if (!line) return;
        if (line.tail && !(await this.#tailIsTorn(line.offset))) return; // still being written
        const parsed = line.tail ? undefined : parseLine(line.text);
        if (parsed) yield { offset: line.offset, end: line.end, value: parsed.value as T };
        else report(this.path, line, onTorn);
      }
    } finally {
      await handle.close();
    }
  }

  /**
   * Follows the log: yields each entry appended after `from` (default: the end of the last whole line)
   * as it arrives, until `signal` aborts or the loop breaks. Woken by file events, polling every second
   * as a fallback. A replaced or rewritten file is read again from its start (see the module comment), so
   * entries a watcher yielded before may be yielded again after a repair() or a rotation.
   */
  async *watch(options: LogReadOptions = {}): AsyncGenerator<T> {
    const { onTorn, signal } = checkRead(options);
    let wake: (() => void) | undefined;
    /** An event came while we were reading: look again at once rather than sleep through it. */
    let poked = false;
    const poke = () => {
      poked = true;
      wake?.();
    };
    const stopListening = signal ? onAbort(signal, poke) : undefined;
    const events = new Watcher(this.path, poke);
    /** The file being followed (undefined: none yet), where we are in it and the bytes just before. */
    let file: { dev: number; ino: number } | undefined;
    let position = 0;
    let mark: Buffer = Buffer.alloc(0);
    let seen: { size: number; mtimeMs: number } | undefined;
    /** An incomplete last line seen once (a writer may be finishing it) or reported as torn already. */
    let pendingTail: number | undefined;
    let reportedTail: number | undefined;
    const restart = () => {
      position = 0;
      mark = Buffer.alloc(0);
      pendingTail = undefined;
      reportedTail = undefined;
    };
    // Where to start is settled now, synchronously, as the iteration begins: an entry appended after
    // that is the watcher's, even if it lands before the loop first looks.
    let start: ReturnType<typeof watchStart>;
    try {
      start = watchStart(this.path, options.from);
    } catch (err) {
      stopListening?.();
      events.close();
      throw this.#io('read', err);
    }
    file = start.file;
    position = start.position;
    mark = start.mark;
    seen = start.seen;
    try {
      while (!signal?.aborted) {
        poked = false;
        const opened = await this.#openForRead();
        if (!opened) {
          if (file) restart(); // deleted: whatever appears at the path next is a new file
          file = undefined;
          seen = undefined;
          events.follow(false);
        } else {
          const { handle, stat: st } = opened;
          try {
            if (file && (st.ino !== file.ino || st.dev !== file.dev))
              restart(); // replaced
            else if (st.size < position)
              restart(); // truncated below our position
            else if (
              position > 0 &&
              (st.size !== seen?.size || st.mtimeMs !== seen.mtimeMs) &&
              !(await bytesBefore(handle, position)).equals(mark)
            )
              restart(); // rewritten in place
            file = { dev: st.dev, ino: st.ino };
            seen = { size: st.size, mtimeMs: st.mtimeMs };
            events.follow(true);
            if (st.size > position) {
              // Only what was there when we looked: later bytes wait for the next look, after the checks.
              const reader = new LineReader(handle, position, { limit: st.size, recent: mark });
              for (let line = await reader.next(); line; line = await reader.next()) {
                if (line.tail) {
                  // An incomplete last line: a writer mid-append, or torn if it stays so under the lock.
                  if (reportedTail === line.offset) break;
                  if (pendingTail === line.offset && (await this.#tailIsTorn(line.offset))) {
                    report(this.path, line, onTorn);
                    reportedTail = line.offset; // stay at its start: an append will close it
                    pendingTail = undefined;
                  } else pendingTail = line.offset;
                  break;
                }
                pendingTail = undefined;
                position = line.end;
                mark = line.recent!;
                const parsed = parseLine(line.text);
                if (parsed) yield parsed.value as T;
                else if (reportedTail !== line.offset) report(this.path, line, onTorn);
                reportedTail = undefined;
                if (signal?.aborted) break;
              }
            }
          } finally {
            await handle.close();
          }
        }
        if (signal?.aborted) break;
        if (poked && pendingTail === undefined) continue;
        await new Promise<void>((resolvePromise) => {
          const timer = setTimeout(done, pendingTail === undefined ? WATCH_POLL_MS : 50);
          function done() {
            clearTimeout(timer);
            wake = undefined;
            resolvePromise();
          }
          wake = done;
        });
      }
    } finally {
      stopListening?.();
      events.close();
    }
  }

  /** Scans the whole file: how many entries it holds and every torn line. */
  async check(): Promise<{ entries: number; torn: TornLine[] }> {
    const torn: TornLine[] = [];
    let entries = 0;
    for await (const _ of this.entries({ onTorn: (t) => torn.push(t) })) entries++;
    return { entries, torn };
  }

  /**
   * Removes torn lines, under the exclusive lock: their bytes are appended to `<real file>.torn` (one
   * JSON line each: offset and base64 bytes) first, then the log is rewritten without them. Returns them.
   * Through a symlink, both the rewrite and `.torn` are beside the real file; the link stays a link.
   */
  async repair(): Promise<TornLine[]> {
    return this.#underWriteLock((target) => this.#repairLocked(target));
  }

  /** repair() under the exclusive lock of `target`, the real file. */
  async #repairLocked(target: string): Promise<TornLine[]> {
    let bytes: Buffer;
    try {
      const st = fs.statSync(target, { throwIfNoEntry: false });
      if (!st) return [];
      if (!st.isFile()) throw new StoreIoError(this.path, 'read', notRegular(st));
      const fd = fs.openSync(target, READ_FLAGS);
      try {
        const fst = fs.fstatSync(fd);
        if (!fst.isFile()) throw new StoreIoError(this.path, 'read', notRegular(fst));
        bytes = fs.readFileSync(fd);
      } finally {
        fs.closeSync(fd);
      }
    } catch (err) {
      throw this.#io('read', err);
    }
    const torn: TornLine[] = [];
    const kept: Buffer[] = [];
    for (const line of splitLines(bytes)) {
      const raw = bytes.subarray(line.offset, line.end);
      if (line.terminated && parseLine(line.text)) kept.push(raw);
      else torn.push({ offset: line.offset, end: line.end, tail: !line.terminated, text: line.text });
    }
    if (torn.length === 0) return [];
    const aside = torn.map(
      (t) =>
        `${JSON.stringify({ offset: t.offset, bytes: bytes.subarray(t.offset, t.end).toString('base64') })}\n`,
    );
    try {
      const fd = fs.openSync(`${target}.torn`, 'a', 0o600);
      try {
        fs.writeSync(fd, aside.join(''));
        if (this.#fsync) fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      await writeFileAtomic(target, Buffer.concat(kept), { fsync: this.#fsync });
    } catch (err) {
      throw this.#io('write', err);
    }
    return torn;
  }

  /** Appends one batch under the exclusive lock (see the module comment). */
  async #commit(apply: ApplyBatch<LogBatch>): Promise<void> {
    await this.#underWriteLock((target) => this.#appendLocked(target, apply));
  }

  /**
   * Runs `fn` under the exclusive lock of the file the path names now, with that file's real path. If a
   * symlinked path was pointed elsewhere while we waited, the lock is given back and the new target
   * locked, as FileDocument.withWriteLock does: appending to the old target would put an acknowledged
   * entry where readers of the path no longer look. OS errors (a lock directory that cannot be made, a
   * lock name too long) are ERR_STORE_IO.
   */
  async #underWriteLock<R>(fn: (target: string) => Promise<R>): Promise<R> {
    try {
      return await withTargetWriteLock(
        this.path,
        this.#lockOptions,
        this.#fsync,
        () => this.#target('write').path,
        fn,
      );
    } catch (err) {
      throw this.#io('write', err);
    }
  }

  /** Writes one batch's lines at the end of `target`, the real file, under its exclusive lock. */
  async #appendLocked(target: string, apply: ApplyBatch<LogBatch>): Promise<void> {
    const { lines, slots } = (await apply({ lines: [], slots: [] })).next;
    if (lines.length === 0) return;
    let fd: number | undefined;
    let created = false;
    try {
      await mkdirDurable(dirname(target), this.#fsync); // a lockDir elsewhere does not make it
      const before = fs.statSync(target, { throwIfNoEntry: false });
      if (before && !before.isFile()) throw new StoreIoError(this.path, 'write', notRegular(before));
      created = !before;
      fd = fs.openSync(target, APPEND_FLAGS, this.#mode);
      const st = fs.fstatSync(fd);
      if (!st.isFile()) throw new StoreIoError(this.path, 'write', notRegular(st));
      const last = Buffer.alloc(1);
      const torn = st.size > 0 && fs.readSync(fd, last, 0, 1, st.size - 1) === 1 && last[0] !== 0x0a;
      const prefix = torn ? CLOSE_TORN : '';
      const body = Buffer.from(`${prefix}${lines.join('\n')}\n`);
      for (let off = 0; off < body.length; ) off += fs.writeSync(fd, body, off, body.length - off);
      if (this.#fsync) await ops.sync(fd);
      let offset = st.size + prefix.length;
      const starts = lines.map((l) => {
        const at = offset;
        offset += Buffer.byteLength(l) + 1;
        return at;
      });
      for (const slot of slots) slot.offset = starts[slot.first]!;
    } catch (err) {
      throw this.#io('write', err);
    } finally {
      if (fd !== undefined) fs.closeSync(fd);
    }
    if (created && this.#fsync) await syncDir(dirname(target)); // the new file's directory entry
  }

  /** Whether the incomplete last line at `offset` is still incomplete under the shared lock (no writer active). */
  async #tailIsTorn(offset: number): Promise<boolean> {
    try {
      return await new FileLock(this.path, { ...this.#lockOptions, type: 'shared' }).withLock(async () => {
        const opened = await this.#openForRead();
        if (!opened) return false; // gone: there is no tail any more
        try {
          const line = await new LineReader(opened.handle, offset).next();
          return line?.tail === true;
        } finally {
          await opened.handle.close();
        }
      });
    } catch (err) {
      throw this.#io('read', err);
    }
  }

  /**
   * Opens the log for reading, or undefined when it does not exist. A path that is not a regular file is
   * refused before it is opened (and, if it became one since, after a non-blocking open, unread).
   */
  async #openForRead(): Promise<
    { handle: fs.promises.FileHandle; stat: fs.Stats; size: number } | undefined
  > {
    let handle: fs.promises.FileHandle | undefined;
    try {
      const before = fs.statSync(this.path, { throwIfNoEntry: false });
      if (!before) return undefined;
      if (!before.isFile()) throw new StoreIoError(this.path, 'read', notRegular(before));
      handle = await fs.promises.open(this.path, READ_FLAGS);
      const stat = await handle.stat();
      if (!stat.isFile()) throw new StoreIoError(this.path, 'read', notRegular(stat));
      return { handle, stat, size: stat.size };
    } catch (err) {
      await handle?.close();
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined; // removed meanwhile
      throw this.#io('read', err);
    }
  }

  /** The lock target of the path now (symlinks resolved); OS errors (a symlink loop) are ERR_STORE_IO. */
  #target(action: 'read' | 'write') {
    try {
      return resolveLockTarget(this.path, this.#lockOptions.lockDir);
    } catch (err) {
      throw this.#io(action, err);
    }
  }

  /** An OS error as a StoreIoError. */
  #io(action: 'read' | 'write', err: unknown): Error {
    return isOsError(err) ? new StoreIoError(this.path, action, err) : (err as Error);
  }
}

/** Follows file events for watch(): the file's while it exists, else its directory's (to see it appear). */
class Watcher {
  readonly #path: string;
  readonly #poke: () => void;
  #watcher: fs.FSWatcher | undefined;
  #following: 'file' | 'dir' | undefined;
  #ino: number | undefined;
  /** The watched inode was deleted or moved ('rename'): its watch is dead, even if the number comes back. */
  #stale = false;

  constructor(path: string, poke: () => void) {
    this.#path = path;
    this.#poke = poke;
  }

  /** Watches the file (`exists`) or its directory; re-watches when the file at the path was replaced. */
  follow(exists: boolean): void {
    let ino: number | undefined;
    try {
      ino = exists ? fs.statSync(this.#path, { throwIfNoEntry: false })?.ino : undefined;
    } catch {
      ino = undefined; // the loop's own open reports what is wrong with the path
    }
    if (exists && this.#following === 'file' && ino === this.#ino && !this.#stale) return;
    if (!exists && this.#following === 'dir') return;
    this.close();
    const name = basename(this.#path);
    try {
      this.#watcher = exists
        ? fs.watch(this.#path, { persistent: false }, (event) => {
            if (event === 'rename') this.#stale = true;
            this.#poke();
          })
        : fs.watch(dirname(this.#path), { persistent: false }, (_event, changed) => {
            if (changed === null || changed === name) this.#poke();
          });
      this.#watcher.on('error', () => {});
      this.#following = exists ? 'file' : 'dir';
      this.#ino = ino;
      this.#stale = false;
    } catch {
      this.#watcher = undefined; // not there (yet): the poll finds it
      this.#following = undefined;
    }
  }

  close(): void {
    this.#watcher?.close();
    this.#watcher = undefined;
    this.#following = undefined;
  }
}

/**
 * Abort listeners, one per signal however many watchers share it (each would count towards the signal's
 * listener limit and print MaxListenersExceededWarning past ten).
 */
const aborts = new WeakMap<AbortSignal, { fns: Set<() => void>; listener: () => void }>();

/** Calls `fn` when `signal` aborts; returns the function that stops that. */
function onAbort(signal: AbortSignal, fn: () => void): () => void {
  let entry = aborts.get(signal);
  if (!entry) {
    const fns = new Set<() => void>();
    const listener = () => {
      for (const f of [...fns]) f();
    };
    entry = { fns, listener };
    aborts.set(signal, entry);
    signal.addEventListener('abort', listener, { once: true });
  }
  const { fns, listener } = entry;
  fns.add(fn);
  return () => {
    fns.delete(fn);
    if (fns.size === 0 && aborts.get(signal) === entry) {
      aborts.delete(signal);
      signal.removeEventListener('abort', listener);
    }
  };
}

/** A line as LineReader returns it. */
interface ReaderLine {
  offset: number;
  end: number;
  text: string;
  /** True for a last line without its newline. */
  tail: boolean;
  /** The (up to MARK) bytes of the file just before `end` (a complete line only). */
  recent?: Buffer;
}

/**
 * Reads a file line by line, asynchronously, in 64 KB chunks (never blocks the event loop long). The
 * pieces of a line longer than a chunk are collected and joined once, when its newline is found: reading
 * is linear in the line's length (joining a growing buffer per chunk was quadratic).
 */
class LineReader {
  readonly #handle: fs.promises.FileHandle;
  /** File offset of the next read, and where reading stops (the size the caller saw). */
  #position: number;
  readonly #limit: number;
  /** The current chunk, and how far into it lines were taken. */
  #chunk = Buffer.alloc(0);
  #used = 0;
  /** The start of the line being assembled, and its pieces from earlier chunks. */
  #lineAt: number;
  #pieces: Buffer[] = [];
  /** The last MARK bytes of the lines taken so far (the caller's, before `from`, to begin with). */
  #recent: Buffer;
  #eof = false;

  constructor(
    handle: fs.promises.FileHandle,
    from: number,
    options: { limit?: number; recent?: Buffer } = {},
  ) {
    this.#handle = handle;
    this.#position = from;
    this.#lineAt = from;
    this.#limit = options.limit ?? Number.POSITIVE_INFINITY;
    this.#recent = options.recent ?? Buffer.alloc(0);
  }

  /** The next non-blank line, or undefined at the end of the file (or of the limit). */
  async next(): Promise<ReaderLine | undefined> {
    for (;;) {
      const nl = this.#chunk.indexOf(0x0a, this.#used);
      if (nl >= 0) {
        const piece = this.#chunk.subarray(this.#used, nl + 1);
        const raw = this.#pieces.length === 0 ? piece : Buffer.concat([...this.#pieces, piece]);
        const offset = this.#lineAt;
        this.#pieces = [];
        this.#used = nl + 1;
        this.#lineAt = offset + raw.length;
        this.#recent = Buffer.concat([this.#recent, raw.subarray(-MARK)]).subarray(-MARK);
        const text = raw.toString('utf8', 0, raw.length - 1).replace(/\r$/, '');
        if (text.trim() === '') continue;
        return { offset, end: this.#lineAt, text, tail: false, recent: this.#recent };
      }
      if (this.#used < this.#chunk.length) this.#pieces.push(this.#chunk.subarray(this.#used));
      this.#chunk = Buffer.alloc(0);
      this.#used = 0;
      if (this.#eof) {
        if (this.#pieces.length === 0) return undefined;
        const raw = Buffer.concat(this.#pieces);
        this.#pieces = [];
        const offset = this.#lineAt;
        this.#lineAt += raw.length;
        const text = raw.toString('utf8');
        if (text.trim() === '') return undefined;
        return { offset, end: this.#lineAt, text, tail: true };
      }
      const want = Math.min(CHUNK, this.#limit - this.#position);
      const chunk = Buffer.allocUnsafe(Math.max(want, 0));
      const { bytesRead } =
        want > 0 ? await this.#handle.read(chunk, 0, want, this.#position) : { bytesRead: 0 };
      if (bytesRead === 0) this.#eof = true;
      this.#position += bytesRead;
      this.#chunk = chunk.subarray(0, bytesRead);
    }
  }
}

/** Reports a torn line through `onTorn`, or throws LogTornError. */
function report(path: string, line: ReaderLine, onTorn: LogReadOptions['onTorn']): void {
  const torn: TornLine = { offset: line.offset, end: line.end, tail: line.tail, text: line.text };
  if (onTorn) onTorn(torn);
  else throw new LogTornError(path, torn.offset, torn.tail);
}

/** Validates read options. */
function checkRead(options: LogReadOptions): LogReadOptions {
  if (options === null || typeof options !== 'object')
    throw new InvalidOptionError('options', options, 'an object');
  const { from, onTorn, signal } = options;
  if (from !== undefined && (!Number.isSafeInteger(from) || from < 0))
    throw new InvalidOptionError('from', from, 'a byte offset >= 0');
  if (onTorn !== undefined && typeof onTorn !== 'function')
    throw new InvalidOptionError('onTorn', onTorn, 'a function');
  if (signal !== undefined && !(signal instanceof AbortSignal))
    throw new InvalidOptionError('signal', signal, 'an AbortSignal');
  return options;
}

/** The error for a `from` that is not a line start of the file (`size` bytes). */
function badFrom(from: number, path: string, size: number): InvalidOptionError {
  return new InvalidOptionError(
    'from',
    from,
    `the offset of a line start in ${path} (0 or an entry's end; the file has ${size} bytes)`,
  );
}

/** Refuses a `from` past the end, or not the start of a line (the byte before it must be a newline). */
async function checkBoundary(
  handle: fs.promises.FileHandle,
  from: number,
  size: number,
  path: string,
): Promise<void> {
  if (from === 0) return;
  if (from > size) throw badFrom(from, path, size);
  const b = Buffer.alloc(1);
  const { bytesRead } = await handle.read(b, 0, 1, from - 1);
  if (bytesRead !== 1 || b[0] !== 0x0a) throw badFrom(from, path, size);
}

/**
 * Where a watch starts, read synchronously: `from` (validated like read()'s), or the end of the last
 * whole line; the file's identity, the bytes before the position and the size and mtime seen.
 */
function watchStart(path: string, from: number | undefined) {
  const none = { file: undefined, position: 0, mark: Buffer.alloc(0), seen: undefined };
  const before = fs.statSync(path, { throwIfNoEntry: false });
  if (!before) {
    if ((from ?? 0) > 0) throw badFrom(from!, path, 0);
    return none;
  }
  if (!before.isFile()) throw new StoreIoError(path, 'read', notRegular(before));
  let fd: number;
  try {
    fd = fs.openSync(path, READ_FLAGS);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    if ((from ?? 0) > 0) throw badFrom(from!, path, 0);
    return none;
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new StoreIoError(path, 'read', notRegular(st));
    const read = (length: number, at: number) => {
      const buf = Buffer.alloc(length);
      return buf.subarray(0, fs.readSync(fd, buf, 0, length, at));
    };
    let position: number;
    if (from === undefined) {
      position = 0;
      for (let end = st.size; end > 0 && position === 0; end = Math.max(0, end - CHUNK)) {
        const start = Math.max(0, end - CHUNK);
        const nl = read(end - start, start).lastIndexOf(0x0a);
        if (nl >= 0) position = start + nl + 1;
      }
    } else {
      if (from > st.size || (from > 0 && read(1, from - 1)[0] !== 0x0a)) throw badFrom(from, path, st.size);
      position = from;
    }
    const markAt = Math.max(0, position - MARK);
    return {
      file: { dev: st.dev, ino: st.ino },
      position,
      mark: read(position - markAt, markAt),
      seen: { size: st.size, mtimeMs: st.mtimeMs },
    };
  } finally {
    fs.closeSync(fd);
  }
}

/** The (up to MARK) bytes just before `position`: a watcher's check that the file was not rewritten. */
async function bytesBefore(handle: fs.promises.FileHandle, position: number): Promise<Buffer> {
  const start = Math.max(0, position - MARK);
  const buf = Buffer.alloc(position - start);
  const { bytesRead } = await handle.read(buf, 0, buf.length, start);
  return buf.subarray(0, bytesRead);
}

/** Why a path that is not a regular file cannot be the log. */
function notRegular(st: fs.Stats): string {
  return st.isDirectory() ? 'it is a directory' : 'it is not a regular file (a FIFO, socket or device)';
}

/** fsyncs a directory (a new log's entry); platforms that cannot are skipped. */
async function syncDir(dir: string): Promise<void> {
  try {
    await ops.syncDir(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (process.platform !== 'win32' && code !== 'EINVAL' && code !== 'EISDIR' && code !== 'EPERM') throw err;
  }
}
