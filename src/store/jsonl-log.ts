/**
 * JsonlLog: an append-only log of JSON values, one per line, shared by any number of processes.
 *
 * - append() writes under the file's exclusive lock with O_APPEND and fsync; concurrent appends in one
 *   process are group-committed (one lock, one write, one fsync) and land in call order. An append
 *   resolves only when its lines are on disk; a new file's directory entry is fsynced too.
 * - A line torn by a crash (a last line without its newline, or a line that is not JSON) is never
 *   yielded and never silently dropped: readers report it with its byte offset (`onTorn`, or a
 *   LogTornError), and the next append starts a new line after it so it cannot spoil new entries.
 *   Only repair() removes torn lines, moving their bytes to `<file>.torn`.
 * - A reader that meets a last line still being written confirms under the shared lock whether it is
 *   really torn, so an append in progress is never reported as torn.
 * - watch() follows the file like `tail -f`, woken by file-change events (inotify on Linux, the same
 *   mechanism the lock uses), with a slow poll as a fallback.
 * Offsets are byte offsets; repair() rewrites the file, so offsets past the first torn line change.
 */
import fs from 'node:fs';
import { dirname, resolve } from 'node:path';
import { ops } from '../atomic/_fs-ops.js';
import { mkdirDurable } from '../atomic/_mkdir.js';
import { writeFileAtomic } from '../atomic/pending-file.js';
import { InvalidOptionError } from '../errors.js';
import { heldInContext } from '../filelock/_holds.js';
import { resolveLockTarget } from '../filelock/_target.js';
import { FileLock } from '../filelock/lock.js';
import { type ApplyBatch, GroupCommit } from './_group-commit.js';
import { lineOf, parseLine, splitLines } from './_jsonl.js';
import { isOsError, LogTornError, StoreIoError, StoreReentrantError } from './errors.js';

const CHUNK = 64 * 1024;
/** How often watch() looks without an event (events can be lost, or absent on network file systems). */
const WATCH_POLL_MS = 1_000;

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
  /** True for a last line without its newline (a crash while appending). */
  tail: boolean;
  /** The line's bytes as text (replacement characters where they are not UTF-8). */
  text: string;
}

/** Options for reading and watching. */
export interface LogReadOptions {
  /** Byte offset to start at: 0, or the `end` of an entry. @default 0 (watch: the current end) */
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
      identity: () => resolveLockTarget(this.path, this.#lockOptions.lockDir).key,
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
      heldByCaller: () =>
        heldInContext(resolveLockTarget(this.path, this.#lockOptions.lockDir).key) !== undefined,
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
    new FileLock(path, { timeout: lockTimeout, lockDir }); // validates lockTimeout and lockDir now
    const st = fs.statSync(path, { throwIfNoEntry: false });
    if (st && !st.isFile())
      throw new StoreIoError(
        resolve(path),
        'read',
        st.isDirectory() ? 'it is a directory' : 'it is not a regular file',
      );
    return new JsonlLog<T>(resolve(path), { fsync, mode, lockTimeout, lockDir });
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
    let handle: fs.promises.FileHandle;
    try {
      handle = await fs.promises.open(this.path, fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw this.#io('read', err);
    }
    try {
      const st = await handle.stat();
      if (!st.isFile()) {
        throw new StoreIoError(
          this.path,
          'read',
          st.isDirectory() ? 'it is a directory' : 'it is not a regular file',
        );
      }
      await checkBoundary(handle, from, this.path);
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
   * Follows the log: yields each entry appended after `from` (default: the current end) as it arrives,
   * until `signal` aborts or the loop breaks. Woken by file events, polling every second as a fallback.
   */
  async *watch(options: LogReadOptions = {}): AsyncGenerator<T> {
    const { onTorn, signal } = checkRead(options);
    let position = options.from ?? fs.statSync(this.path, { throwIfNoEntry: false })?.size ?? 0;
    let wake: (() => void) | undefined;
    const poke = () => wake?.();
    let watcher: fs.FSWatcher | undefined;
    const rewatch = () => {
      watcher?.close();
      try {
        watcher = fs.watch(this.path, poke);
        watcher.on('error', () => {});
      } catch {
        watcher = undefined; // not there yet: polling finds it
      }
    };
    rewatch();
    signal?.addEventListener('abort', poke);
    let ino: number | undefined;
    let pendingTail: number | undefined;
    try {
      while (!signal?.aborted) {
        const st = fs.statSync(this.path, { throwIfNoEntry: false });
        if (st && ino !== undefined && st.ino !== ino) rewatch(); // replaced (repair): follow the new file
        if (st) ino = st.ino;
        if (st && st.size < position) position = st.size; // shrunk (repair): go on from its end
        if (st && st.size > position) {
          for await (const item of this.#lines(position)) {
            if (item.tail) {
              // An incomplete last line: a writer mid-append, or torn if it stays so under the lock.
              if (pendingTail === item.offset && (await this.#tailIsTorn(item.offset))) {
                report(this.path, item, onTorn);
                position = item.end;
              } else pendingTail = item.offset;
              break;
            }
            pendingTail = undefined;
            position = item.end;
            const parsed = parseLine(item.text);
            if (parsed) yield parsed.value as T;
            else report(this.path, item, onTorn);
          }
        }
        if (signal?.aborted) break;
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
      signal?.removeEventListener('abort', poke);
      watcher?.close();
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
   * Removes torn lines, under the exclusive lock: their bytes are appended to `<file>.torn` (one JSON
   * line each: offset and base64 bytes) first, then the log is rewritten without them. Returns them.
   */
  async repair(): Promise<TornLine[]> {
    return new FileLock(this.path, { ...this.#lockOptions, type: 'exclusive' }).withLock(async () => {
      let bytes: Buffer;
      try {
        bytes = fs.readFileSync(this.path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
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
        const fd = fs.openSync(`${this.path}.torn`, 'a', 0o600);
        try {
          fs.writeSync(fd, aside.join(''));
          if (this.#fsync) fs.fsyncSync(fd);
        } finally {
          fs.closeSync(fd);
        }
        await writeFileAtomic(this.path, Buffer.concat(kept), { fsync: this.#fsync });
      } catch (err) {
        throw this.#io('write', err);
      }
      return torn;
    });
  }

  /** Appends one batch under the exclusive lock (see the module comment). */
  async #commit(apply: ApplyBatch<LogBatch>): Promise<void> {
    const lock = new FileLock(this.path, { ...this.#lockOptions, type: 'exclusive' });
    try {
      await mkdirDurable(dirname(lock.path), this.#fsync);
    } catch (err) {
      throw this.#io('write', err);
    }
    await lock.withLock(async () => {
      const { lines, slots } = (await apply({ lines: [], slots: [] })).next;
      if (lines.length === 0) return;
      const target = lock.path;
      const created = !fs.existsSync(target);
      let fd: number | undefined;
      try {
        fd = fs.openSync(target, 'a+', this.#mode);
        const st = fs.fstatSync(fd);
        if (!st.isFile()) throw new StoreIoError(this.path, 'write', 'it is not a regular file');
        // A torn last line (a crash mid-append) gets its newline first, so it cannot swallow our entries.
        const last = Buffer.alloc(1);
        const torn = st.size > 0 && fs.readSync(fd, last, 0, 1, st.size - 1) === 1 && last[0] !== 0x0a;
        const body = Buffer.from(`${torn ? '\n' : ''}${lines.join('\n')}\n`);
        for (let off = 0; off < body.length; ) off += fs.writeSync(fd, body, off, body.length - off);
        if (this.#fsync) await ops.sync(fd);
        let offset = st.size + (torn ? 1 : 0);
        const starts = lines.map((l) => {
          const at = offset;
          offset += Buffer.byteLength(l) + 1;
          return at;
        });
        for (const slot of slots) slot.offset = starts[slot.first]!;
      } catch (err) {
        throw isOsError(err) ? this.#io('write', err) : err;
      } finally {
        if (fd !== undefined) fs.closeSync(fd);
      }
      if (created && this.#fsync) await syncDir(dirname(target)); // the new file's directory entry
    });
  }

  /** Whether the incomplete last line at `offset` is still incomplete under the shared lock (no writer active). */
  async #tailIsTorn(offset: number): Promise<boolean> {
    return new FileLock(this.path, { ...this.#lockOptions, type: 'shared' }).withLock(async () => {
      const handle = await fs.promises.open(this.path, 'r');
      try {
        const line = await new LineReader(handle, offset).next();
        return line?.tail === true;
      } finally {
        await handle.close();
      }
    });
  }

  /** The lines from `from` to the current end (the last may be an incomplete tail). */
  async *#lines(from: number): AsyncGenerator<ReaderLine> {
    const handle = await fs.promises.open(this.path, 'r');
    try {
      const reader = new LineReader(handle, from);
      for (;;) {
        const line = await reader.next();
        if (!line) return;
        yield line;
      }
    } finally {
      await handle.close();
    }
  }

  /** An OS error as a StoreIoError. */
  #io(action: 'read' | 'write', err: unknown): Error {
    return isOsError(err) ? new StoreIoError(this.path, action, err) : (err as Error);
  }
}

/** A line as LineReader returns it. */
interface ReaderLine {
  offset: number;
  end: number;
  text: string;
  /** True for a last line without its newline. */
  tail: boolean;
}

/** Reads a file line by line, asynchronously, in 64 KB chunks (never blocks the event loop long). */
class LineReader {
  readonly #handle: fs.promises.FileHandle;
  #position: number;
  #buffered = Buffer.alloc(0);
  #bufferedAt: number;
  #eof = false;

  constructor(handle: fs.promises.FileHandle, from: number) {
    this.#handle = handle;
    this.#position = from;
    this.#bufferedAt = from;
  }

  /** The next non-blank line, or undefined at the end of the file. */
  async next(): Promise<ReaderLine | undefined> {
    for (;;) {
      const nl = this.#buffered.indexOf(0x0a);
      if (nl >= 0) {
        const raw = this.#buffered.subarray(0, nl);
        const offset = this.#bufferedAt;
        this.#buffered = this.#buffered.subarray(nl + 1);
        this.#bufferedAt += nl + 1;
        const text = raw.toString('utf8').replace(/\r$/, '');
        if (text.trim() === '') continue;
        return { offset, end: this.#bufferedAt, text, tail: false };
      }
      if (this.#eof) {
        if (this.#buffered.length === 0 || this.#buffered.toString('utf8').trim() === '') return undefined;
        const offset = this.#bufferedAt;
        const text = this.#buffered.toString('utf8');
        this.#bufferedAt += this.#buffered.length;
        this.#buffered = Buffer.alloc(0);
        return { offset, end: this.#bufferedAt, text, tail: true };
      }
      const chunk = Buffer.allocUnsafe(CHUNK);
      const { bytesRead } = await this.#handle.read(chunk, 0, CHUNK, this.#position);
      if (bytesRead === 0) this.#eof = true;
      this.#position += bytesRead;
      this.#buffered = Buffer.concat([this.#buffered, chunk.subarray(0, bytesRead)]);
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

/** Refuses a `from` that is not the start of a line (the byte before it must be a newline). */
async function checkBoundary(handle: fs.promises.FileHandle, from: number, path: string): Promise<void> {
  if (from === 0) return;
  const b = Buffer.alloc(1);
  const { bytesRead } = await handle.read(b, 0, 1, from - 1);
  if (bytesRead === 1 && b[0] !== 0x0a) {
    throw new InvalidOptionError('from', from, `the offset of a line start in ${path} (0 or an entry's end)`);
  }
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
