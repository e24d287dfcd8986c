/**
 * JsonFile: a JSON state file many processes read and update, with the registry's guarantees.
 *
 * - update(fn) is a locked read-modify-write of the latest file: no update from any process is ever
 *   lost. Concurrent updates in one process are group-committed (one lock, one fsync); each runs on its
 *   own rollback point, so one that throws (or whose result fails `validate`) is undone and fails alone.
 * - An update resolves only when the new file and its directory entry are on disk (unless fsync: false).
 * - A draft is its callback's own copy: changes made to it after the callback settled reach nothing (they
 *   do not throw; freezing every draft would cost a walk of the document per write). A callback that runs
 *   longer than lockTimeout fails with ERR_UPDATE_TIMEOUT and its draft changes are dropped, but the
 *   callback keeps running and its other effects happen.
 * - read() is synchronous and returns the last committed snapshot, deep-frozen (never a half-applied
 *   update, never a copy that can drift), re-read when the file changed (see _file-document.ts).
 * - A file that is not valid JSON, nests deeper than MAX_DEPTH, or fails `validate` is never
 *   overwritten: reads and updates fail with ERR_STORE_CORRUPT (with the position) or ERR_STORE_INVALID.
 * - Numbers are JavaScript numbers: integers beyond 2^53 are rounded and spellings are not kept (1.0 is
 *   written 1, 1e2 100); store such values as strings. A number JSON has no text for (1e400 reads as
 *   Infinity; NaN put by a callback) is refused on write with ERR_STORE_INVALID instead of being written
 *   as null.
 * The file is rewritten with 2-space indentation.
 */
import { resolve } from 'node:path';
import { jsonProblem, nestsDeeperThan } from '../atomic/_json-scan.js';
import { InvalidOptionError } from '../errors.js';
import { DEFAULT_TIMEOUT } from '../filelock/options.js';
import { FileDocument } from './_file-document.js';
import { type Draft, GroupCommit } from './_group-commit.js';
import { jsonText } from './_jsonl.js';
import {
  parseStoreJson,
  StoreCorruptError,
  StoreInvalidError,
  StoreIoError,
  StoreReentrantError,
  UpdateTimeoutError,
} from './errors.js';

/** Deeper documents are refused: JSON.stringify and structuredClone recurse (they overflow near 5,000). */
export const MAX_DEPTH = 1_000;

/** Options for {@link JsonFile.open}. */
export interface JsonFileOptions<T> {
  /** The value while the file does not exist (it is written by the first update). */
  defaults: () => T;
  /**
   * Checks a value read from the file or produced by an update; return false or throw to refuse it
   * (ERR_STORE_INVALID: a refused update fails alone and writes nothing). @default accept anything
   */
  validate?: (value: unknown) => unknown;
  /** fsync file and directory on every update. @default true */
  fsync?: boolean;
  /** How long an update waits for the file lock, in ms (FileLock `timeout`). @default 30000 */
  lockTimeout?: number;
  /** Directory of the lock file. @default `<dir of the real file>/.gastown/locks` */
  lockDir?: string;
}

/** A JSON document in a file, shared by any number of processes. */
export class JsonFile<T> {
  /** The file, absolute (writes go to the file it names, through symlinks). */
  readonly path: string;
  readonly #doc: FileDocument<T>;
  readonly #writes: GroupCommit<T, T>;

  private constructor(
    path: string,
    doc: FileDocument<T>,
    validate: (value: unknown) => void,
    callbackTimeout: number,
  ) {
    this.path = path;
    this.#doc = doc;
    this.#writes = new GroupCommit<T, T>({
      identity: () => doc.identity,
      begin: (base) => beginDraft(base, validate, path),
      callbackTimeout,
      timedOut: (ms) => new UpdateTimeoutError(path, ms),
      commit: (apply) => doc.commit(apply),
      reentrant: () => new StoreReentrantError(path),
      heldByCaller: () => doc.heldByCaller(),
    });
  }

  /** Opens the JSON file at `path` and reads it (a missing file reads as `defaults()`). */
  static async open<T>(path: string, options: JsonFileOptions<T>): Promise<JsonFile<T>> {
    if (typeof path !== 'string' || path === '')
      throw new InvalidOptionError('path', path, 'a non-empty string');
    if (options === null || typeof options !== 'object')
      throw new InvalidOptionError('options', options, 'an object');
    const { defaults, validate, fsync = true, lockTimeout, lockDir } = options;
    if (typeof defaults !== 'function')
      throw new InvalidOptionError('defaults', defaults, 'a function returning the initial value');
    if (validate !== undefined && typeof validate !== 'function')
      throw new InvalidOptionError('validate', validate, 'a function');
    if (typeof fsync !== 'boolean') throw new InvalidOptionError('fsync', fsync, 'a boolean');
    const abs = resolve(path);
    const check = checker(validate, abs);
    const initial = defaults();
    try {
      check(initial);
    } catch (err) {
      throw new InvalidOptionError(
        'defaults',
        initial,
        `a value validate accepts (${(err as Error).message})`,
      );
    }
    const doc = new FileDocument<T>(
      abs,
      {
        empty: () => deepFreeze(structuredClone(initial)),
        parse: (bytes, p) => {
          const value = parseDocument(bytes, p);
          check(value);
          return deepFreeze(value as T);
        },
        serialize: (value) => `${JSON.stringify(value, null, 2)}\n`,
      },
      { io: (p, action, cause) => new StoreIoError(p, action, cause) },
      { lockTimeout, lockDir, fsync },
    );
    doc.read();
    return new JsonFile<T>(abs, doc, check, lockTimeout ?? DEFAULT_TIMEOUT);
  }

  /** The last committed value, re-read first if the file changed. Deep-frozen: change it with update(). */
  read(): T {
    return this.#doc.read().state;
  }

  /**
   * Runs `fn` on a private copy of the latest value under the file's write lock and saves what it
   * changed; resolves with `fn`'s result once the file is durable. `fn` may mutate the draft it gets.
   */
  update<R>(fn: (draft: T) => R | Promise<R>): Promise<R> {
    if (typeof fn !== 'function') return Promise.reject(new InvalidOptionError('fn', fn, 'a function'));
    return this.#writes.submit((draft) => fn(draft));
  }

  /** Replaces the whole value (group-committed like update). */
  set(value: T): Promise<void> {
    let copy: T;
    try {
      const problem = jsonProblem(value, MAX_DEPTH);
      if (problem) throw new TypeError(problem);
      copy = JSON.parse(jsonText(value)) as T; // exactly what the file will hold
    } catch (err) {
      return Promise.reject(
        new InvalidOptionError('value', value, `a JSON value (${(err as Error).message})`),
      );
    }
    return this.#writes.submit((_draft, draft) => {
      (draft as JsonDraft<T>).replace(copy);
    });
  }

  /** Re-reads the file now, under its shared lock. */
  async reload(): Promise<T> {
    return (await this.#doc.reload()).state;
  }
}

/** The draft of a JSON batch: the working copy, cloned at each rollback point. */
interface JsonDraft<T> extends Draft<T, T> {
  replace(value: T): void;
}

/**
 * Opens a draft over `base` (deep-frozen) for one batch. Cost per write, whatever the batch size: one
 * walk (jsonProblem), one JSON.stringify and one JSON.parse of the document; per batch: one
 * structuredClone and one deep freeze. The rollback point of each write is the text of the state
 * before it (already produced by the previous write's check), parsed again only when a write is undone.
 * Each callback gets an object no earlier callback holds (the parse of the last check), so changes made
 * to a draft after its callback settled reach nothing.
 */
function beginDraft<T>(base: T, validate: (value: unknown) => void, path: string): JsonDraft<T> {
  let working: T = structuredClone(base);
  /** The text of the state after the last kept write; undefined: `base`. */
  let savedText: string | undefined;
  let kept = 0;
  let pending = false;
  const settle = () => {
    if (pending) kept++;
    pending = false;
  };
  return {
    get view() {
      return working;
    },
    mark() {
      settle();
      pending = true;
    },
    rollback() {
      working = savedText === undefined ? structuredClone(base) : (JSON.parse(savedText) as T);
      pending = false;
    },
    check() {
      const problem = jsonProblem(working, MAX_DEPTH);
      if (problem) throw new StoreInvalidError(path, problem);
      let text: string;
      try {
        text = jsonText(working);
      } catch (err) {
        throw new StoreInvalidError(path, `the value is not JSON: ${(err as Error).message}`, err);
      }
      // What is kept is exactly what the file will hold (no functions, undefined fields or Dates), and a
      // new object: the callback's own draft is left behind.
      working = JSON.parse(text) as T;
      validate(working);
      savedText = text;
    },
    replace(value) {
      working = value;
    },
    finish() {
      settle();
      return { next: deepFreeze(working), changed: kept > 0 };
    },
  };
}

/** Parses the file; JSON errors and excessive nesting are StoreCorruptError with a position. */
function parseDocument(bytes: Buffer, path: string): unknown {
  const text = bytes.toString('utf8');
  if (text.trim() === '') throw new StoreCorruptError(path, 'the file is empty', 0);
  const value = parseStoreJson(text, path);
  if (nestsDeeperThan(value, MAX_DEPTH)) {
    throw new StoreCorruptError(path, `nesting deeper than ${MAX_DEPTH} levels`, depthPosition(text));
  }
  return value;
}

/** The offset where nesting first exceeds MAX_DEPTH (only called when it does). */
function depthPosition(text: string): number {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '{' || c === '[') {
      if (++depth > MAX_DEPTH) return i;
    } else if (c === '}' || c === ']') depth--;
  }
  return 0;
}

/** `validate` as a function that throws StoreInvalidError for a refused value. */
function checker(validate: JsonFileOptions<unknown>['validate'], path: string): (value: unknown) => void {
  return (value) => {
    if (!validate) return;
    let ok: unknown;
    try {
      ok = validate(value);
    } catch (err) {
      throw new StoreInvalidError(path, (err as Error)?.message ?? String(err), err);
    }
    if (ok === false) throw new StoreInvalidError(path, 'validate returned false');
  };
}

/** Freezes `value` and everything in it, so a committed snapshot cannot be changed by a reader. */
function deepFreeze<T>(value: T): T {
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    if (v === null || typeof v !== 'object' || Object.isFrozen(v)) continue;
    Object.freeze(v);
    for (const child of Object.values(v)) stack.push(child);
  }
  return value;
}
