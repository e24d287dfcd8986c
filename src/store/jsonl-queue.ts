/**
 * JsonlQueue: a task queue in a JSON Lines file (one pending task per line, oldest first), shared by
 * any number of processes.
 *
 * - Every change is a locked read-modify-write and an atomic replace of the file (group-committed, like
 *   every store): a task enqueued is durable when the promise resolves, and a task is handed to exactly
 *   one consumer across processes.
 * - dequeue() is at-most-once: the task is removed before it is returned, so if the consumer dies right
 *   after dequeue() resolves, the task is gone.
 * - lease()/ack() are at-least-once: a leased task moves to `<file>.leases.json` with a visibility
 *   deadline; ack() deletes it. A lease not acked in time (or released) makes its task visible again,
 *   ahead of the queue file's tasks: the next lease() or dequeue() takes it (its record is replaced by
 *   one with a new lease id and a higher `deliveries`). ack() of a lease whose task was handed out again
 *   fails with ERR_LEASE_EXPIRED.
 * - Every task is stored exactly once, at every instant, crashes included: in the queue file or in the
 *   leases file. A batch that changes both files (a task moving from the queue to a lease) has one commit
 *   point, the rename of the queue file: first the leases file is written with its current leases plus
 *   the batch's result as `pending` (tagged with the SHA-256 of the queue file's current bytes), then the
 *   queue file, then the leases file without `pending`. A reader takes `pending.leases` only once the
 *   queue file no longer has the tagged bytes, i.e. once the queue write happened; so a crash before the
 *   queue's rename leaves the old state whole, and one after it the new state whole. The next commit
 *   clears a `pending` left by a crash before it changes the queue file again. A batch that changes one
 *   file writes only that one.
 * - The queue file is rewritten from its parsed lines on every change: each task line keeps its text, but
 *   CRLF line ends become LF, blank lines are dropped and the last line gets its newline. A line that is
 *   not JSON makes the file corrupt (ERR_STORE_CORRUPT with its offset), and a corrupt file is never
 *   overwritten.
 * Not a log: the file holds only what is pending; use JsonlLog for history.
 */
import { resolve } from 'node:path';
import { crypto } from '../_crypto.js';
import { InvalidOptionError } from '../errors.js';
import { resolveLockTarget } from '../filelock/_target.js';
import type { DocumentStore, Snapshot } from './_document.js';
import { FileDocument, type FileSnapshot } from './_file-document.js';
import { type ApplyBatch, type Draft, GroupCommit } from './_group-commit.js';
import { lineOf, parseLine, splitLines } from './_jsonl.js';
import {
  isOsError,
  LeaseExpiredError,
  parseStoreJson,
  StoreCorruptError,
  StoreIoError,
  StoreReentrantError,
} from './errors.js';

/** Options for {@link JsonlQueue.open}. */
export interface JsonlQueueOptions {
  /** fsync every change. @default true */
  fsync?: boolean;
  /** How long an operation waits for the file lock, in ms. @default 30000 */
  lockTimeout?: number;
  /** Directory of the lock file. @default `<dir of the real file>/.gastown/locks` */
  lockDir?: string;
}

/** A task handed out by {@link JsonlQueue.lease}, invisible to others until `expiresAt`. */
export interface Lease<T> {
  /** Identifies the lease for ack(), release() and renew(). */
  readonly id: string;
  readonly task: T;
  /** When (ms since the epoch) the task becomes visible again unless acked or renewed. */
  readonly expiresAt: number;
  /** How many times this task has been leased, this one included. */
  readonly deliveries: number;
}

/** A lease as stored in the leases file; the task keeps its raw line. */
interface LeaseRecord {
  readonly id: string;
  readonly line: string;
  readonly expiresAt: number;
  readonly deliveries: number;
}

/**
 * The leases file: the leases, and, while a batch that moves tasks between the two files is half way,
 * the leases that batch ends with. They hold once the queue file's bytes no longer hash to `queue`.
 */
interface LeasesFile {
  readonly leases: readonly LeaseRecord[];
  readonly pending?: { readonly queue: string; readonly leases: readonly LeaseRecord[] };
}

/** The queue's state: pending task lines (oldest first) and outstanding leases. */
interface QueueState {
  readonly tasks: readonly string[];
  readonly leases: readonly LeaseRecord[];
}

/** What an operation's callback works on. */
interface QueueView {
  tasks: string[];
  leases: LeaseRecord[];
}

/** A queue of JSON tasks in a JSONL file. */
export class JsonlQueue<T> {
  /** The queue file, absolute. */
  readonly path: string;
  readonly #store: QueueStore;
  readonly #writes: GroupCommit<QueueState, QueueView>;

  private constructor(path: string, store: QueueStore) {
    this.path = path;
    this.#store = store;
    this.#writes = new GroupCommit<QueueState, QueueView>({
      identity: () => store.identity,
      begin: beginDraft,
      commit: (apply) => store.commit(apply),
      reentrant: () => new StoreReentrantError(path),
      heldByCaller: () => store.heldByCaller(),
    });
  }

  /** Opens the queue at `path` (a missing file is an empty queue) and reads it. */
  static async open<T>(path: string, options: JsonlQueueOptions = {}): Promise<JsonlQueue<T>> {
    if (typeof path !== 'string' || path === '')
      throw new InvalidOptionError('path', path, 'a non-empty string');
    if (options === null || typeof options !== 'object')
      throw new InvalidOptionError('options', options, 'an object');
    const { fsync = true, lockTimeout, lockDir } = options;
    if (typeof fsync !== 'boolean') throw new InvalidOptionError('fsync', fsync, 'a boolean');
    const abs = resolve(path);
    const store = new QueueStore(abs, { fsync, lockTimeout, lockDir });
    store.read();
    return new JsonlQueue<T>(abs, store);
  }

  /** Appends `task` at the tail; resolves once it is durable. */
  async enqueue(task: T): Promise<void> {
    const line = taskLine(task, 'task');
    await this.#writes.submit((q) => {
      q.tasks.push(line);
    }, false);
  }

  /** Appends `tasks` in order, as one change. */
  async enqueueMany(tasks: readonly T[]): Promise<void> {
    if (!Array.isArray(tasks)) throw new InvalidOptionError('tasks', tasks, 'an array');
    const lines = tasks.map((t, i) => taskLine(t, `tasks[${i}]`));
    await this.#writes.submit((q) => {
      q.tasks.push(...lines);
    }, false);
  }

  /**
   * Removes and returns the oldest visible task (a task whose lease ran out comes first), or undefined
   * when none is pending. At-most-once: if this process dies after the promise resolved, the task is
   * gone (use lease() for work that must not be lost).
   */
  async dequeue(): Promise<T | undefined> {
    const line = await this.#writes.submit((q) => {
      const i = firstVisibleLease(q.leases, Date.now());
      return i >= 0 ? q.leases.splice(i, 1)[0]!.line : q.tasks.shift();
    }, false);
    return line === undefined ? undefined : (JSON.parse(line) as T);
  }

  /**
   * Takes the oldest visible task for `visibility` ms (default 30 s): it stays stored, invisible to
   * others, and becomes visible again if not acked in time. Resolves undefined when nothing is pending.
   */
  async lease(visibility = 30_000): Promise<Lease<T> | undefined> {
    checkVisibility(visibility);
    const record = await this.#writes.submit((q) => {
      const now = Date.now();
      const id = crypto().randomBytes(9).toString('base64url');
      const i = firstVisibleLease(q.leases, now);
      if (i >= 0) {
        const again = q.leases[i]!;
        q.leases[i] = { id, line: again.line, expiresAt: now + visibility, deliveries: again.deliveries + 1 };
        return q.leases[i];
      }
      const line = q.tasks.shift();
      if (line === undefined) return undefined;
      const lease: LeaseRecord = { id, line, expiresAt: now + visibility, deliveries: 1 };
      q.leases.push(lease);
      return lease;
    }, false);
    return (
      record && {
        id: record.id,
        task: JSON.parse(record.line) as T,
        expiresAt: record.expiresAt,
        deliveries: record.deliveries,
      }
    );
  }

  /**
   * Marks a leased task done (deletes it). Accepted even after the deadline as long as nobody took the
   * task since; ERR_LEASE_EXPIRED when it was handed out again (or acked already).
   */
  async ack(lease: Lease<T> | string): Promise<void> {
    const id = leaseId(lease);
    await this.#writes.submit((q) => {
      q.leases.splice(findLease(q, id, this.path), 1);
    }, false);
  }

  /** Gives a leased task back: it is visible again at once, ahead of the queue. ERR_LEASE_EXPIRED as ack(). */
  async release(lease: Lease<T> | string): Promise<void> {
    const id = leaseId(lease);
    await this.#writes.submit((q) => {
      const i = findLease(q, id, this.path);
      q.leases[i] = { ...q.leases[i]!, expiresAt: 0 };
    }, false);
  }

  /** Extends a lease to `visibility` ms from now; returns the new deadline. ERR_LEASE_EXPIRED as ack(). */
  async renew(lease: Lease<T> | string, visibility = 30_000): Promise<number> {
    const id = leaseId(lease);
    checkVisibility(visibility);
    return this.#writes.submit((q) => {
      const i = findLease(q, id, this.path);
      const expiresAt = Date.now() + visibility;
      q.leases[i] = { ...q.leases[i]!, expiresAt };
      return expiresAt;
    }, false);
  }

  /** The oldest visible task without removing it, or undefined (from the latest committed state). */
  async peek(): Promise<T | undefined> {
    const { tasks, leases } = this.#store.read().state;
    const i = firstVisibleLease(leases, Date.now());
    const line = i >= 0 ? leases[i]!.line : tasks[0];
    return line === undefined ? undefined : (JSON.parse(line) as T);
  }

  /** How many tasks are visible (pending, or leased with the deadline passed), from the latest committed state. */
  size(): number {
    const { tasks, leases } = this.#store.read().state;
    const now = Date.now();
    return tasks.length + leases.filter((l) => l.expiresAt <= now).length;
  }

  /** How many tasks are leased and still invisible. */
  leased(): number {
    const now = Date.now();
    return this.#store.read().state.leases.filter((l) => l.expiresAt > now).length;
  }

  /** Re-reads both files under the queue's shared lock. */
  async reload(): Promise<void> {
    await this.#store.reload();
  }
}

/** The queue file and the leases file, committed together under the queue file's lock. */
class QueueStore implements DocumentStore<QueueState> {
  readonly #queue: FileDocument<readonly string[]>;
  readonly #leases: FileDocument<LeasesFile>;
  #published: { tasks: readonly string[]; file: LeasesFile; state: QueueState } | undefined;

  constructor(path: string, options: { fsync: boolean; lockTimeout?: number; lockDir?: string }) {
    const errors = {
      io: (p: string, action: 'read' | 'write', cause: NodeJS.ErrnoException | string) =>
        new StoreIoError(p, action, cause),
    };
    this.#queue = new FileDocument(
      path,
      { empty: () => [], parse: parseQueue, serialize: serializeQueue },
      errors,
      options,
    );
    // Beside the real file (symlinks resolved), so every spelling of the queue finds the same leases.
    let real: string;
    try {
      real = resolveLockTarget(path, options.lockDir).path;
    } catch (err) {
      throw isOsError(err) ? new StoreIoError(path, 'read', err) : err;
    }
    const leasesPath = `${real}.leases.json`;
    this.#leases = new FileDocument(
      leasesPath,
      { empty: (): LeasesFile => ({ leases: [] }), parse: parseLeases, serialize: serializeLeases },
      errors,
      options,
    );
  }

  get identity(): string {
    return this.#queue.identity;
  }

  heldByCaller(): boolean {
    return this.#queue.heldByCaller();
  }

  read(): Snapshot<QueueState> {
    // The queue first: a commit that completes between the two reads then shows its leases with the old
    // queue (a moved task seen twice by peek/size) rather than neither; reload() reads both under the lock.
    const queue = this.#queue.read();
    return { state: this.#state(queue, this.#leases.read().state) };
  }

  async reload(): Promise<Snapshot<QueueState>> {
    // Both files under the queue's shared lock: no writer is half way through the pair.
    return this.#queue.withReadLock(() => {
      const queue = this.#queue.readLocked(true);
      return { state: this.#state(queue, this.#leases.readLocked(true).state) };
    });
  }

  async commit(apply: ApplyBatch<QueueState>): Promise<void> {
    await this.#queue.withWriteLock(async (target) => {
      const leasesTarget = `${target}.leases.json`;
      const queue = this.#queue.readLocked(false, target);
      const file = this.#leases.readLocked(false, leasesTarget).state;
      const base = this.#state(queue, file);
      const { next, changed } = await apply(base);
      if (!changed && file.pending === undefined) return;
      const before = queue.bytes ?? EMPTY;
      const queueChanges = !Buffer.from(serializeQueue(next.tasks)).equals(before);
      const leasesChange =
        file.pending !== undefined ||
        next.leases.length !== file.leases.length ||
        next.leases.some((l, i) => l !== file.leases[i]);
      if (queueChanges && leasesChange) {
        // One commit point for both files, the queue's rename (see the module comment).
        await this.#leases.writeLocked(
          { leases: base.leases, pending: { queue: sha256(before), leases: next.leases } },
          leasesTarget,
        );
        await this.#queue.writeLocked(next.tasks, target);
        await this.#leases.writeLocked({ leases: next.leases }, leasesTarget);
      } else if (queueChanges) {
        await this.#queue.writeLocked(next.tasks, target);
      } else if (leasesChange) {
        await this.#leases.writeLocked({ leases: next.leases }, leasesTarget);
      }
    });
  }

  /** The state the two files hold together; one object per pair of snapshots, so unchanged reads return the same. */
  #state(queue: FileSnapshot<readonly string[]>, file: LeasesFile): QueueState {
    const p = this.#published;
    if (p && p.tasks === queue.state && p.file === file) return p.state;
    const moved = file.pending !== undefined && sha256(queue.bytes ?? EMPTY) !== file.pending.queue;
    const state = { tasks: queue.state, leases: moved ? file.pending!.leases : file.leases };
    this.#published = { tasks: queue.state, file, state };
    return state;
  }
}

const EMPTY = Buffer.alloc(0);

/** The SHA-256 of `bytes`, in hex. */
function sha256(bytes: Buffer): string {
  return crypto().createHash('sha256').update(bytes).digest('hex');
}

/** Opens a draft over the committed queue; each operation gets its own rollback point. */
function beginDraft(base: QueueState): Draft<QueueState, QueueView> {
  let view: QueueView = { tasks: [...base.tasks], leases: [...base.leases] };
  let saved = view;
  let changes = 0;
  let pending = false;
  return {
    get view() {
      return view;
    },
    mark() {
      if (pending) changes++;
      saved = view;
      view = { tasks: [...saved.tasks], leases: [...saved.leases] };
      pending = true;
    },
    rollback() {
      view = saved;
      pending = false;
    },
    finish() {
      if (pending) changes++;
      return {
        next: { tasks: Object.freeze(view.tasks), leases: Object.freeze(view.leases) },
        changed: changes > 0,
      };
    },
  };
}

/** The index of the oldest lease whose deadline passed (its task is visible again), or -1. */
function firstVisibleLease(leases: readonly LeaseRecord[], now: number): number {
  return leases.findIndex((l) => l.expiresAt <= now);
}

/** The index of the lease `id`, or LeaseExpiredError. */
function findLease(q: QueueView, id: string, path: string): number {
  const i = q.leases.findIndex((l) => l.id === id);
  if (i < 0) throw new LeaseExpiredError(path, id);
  return i;
}

/** A lease's id, from a Lease or the id itself. */
function leaseId(lease: Lease<unknown> | string): string {
  const id = typeof lease === 'string' ? lease : (lease as Lease<unknown> | null)?.id;
  if (typeof id !== 'string' || id === '') throw new InvalidOptionError('lease', lease, 'a Lease or its id');
  return id;
}

/** Throws unless `ms` is a positive number of ms. */
function checkVisibility(ms: number): void {
  if (typeof ms !== 'number' || !(ms > 0) || !Number.isFinite(ms)) {
    throw new InvalidOptionError('visibility', ms, 'a positive number of ms');
  }
}

/** The JSONL line of a task; a value JSON cannot hold is ERR_INVALID_OPTION naming the argument. */
function taskLine(task: unknown, name: string): string {
  try {
    return lineOf(task);
  } catch (err) {
    throw new InvalidOptionError(name, task, `a JSON value (${(err as Error).message})`);
  }
}

/** Parses the queue file: every non-blank line must be JSON; the raw lines are kept. */
function parseQueue(bytes: Buffer, path: string): readonly string[] {
  const tasks: string[] = [];
  for (const line of splitLines(bytes)) {
    if (!parseLine(line.text)) {
      const what = line.terminated
        ? 'a line that is not JSON'
        : 'a torn last line (a crash while appending?)';
      throw new StoreCorruptError(path, `${what} at byte ${line.offset}`, line.offset);
    }
    tasks.push(line.text);
  }
  return Object.freeze(tasks);
}

/** The queue file's text: one task per line. */
function serializeQueue(tasks: readonly string[]): string {
  return tasks.length === 0 ? '' : `${tasks.join('\n')}\n`;
}

/** Parses the leases file; invalid JSON is ERR_STORE_CORRUPT with its position. */
function parseLeases(bytes: Buffer, path: string): LeasesFile {
  const data = parseStoreJson(bytes.toString('utf8'), path);
  const { leases, pending } = (data ?? {}) as { leases?: unknown; pending?: unknown };
  const shape = 'expected {"leases": [{id, line, expiresAt, deliveries}], "pending"?: {queue, leases}}';
  if (!isLeaseList(leases)) throw new StoreCorruptError(path, shape);
  if (pending === undefined) return Object.freeze({ leases: Object.freeze(leases) });
  const p = pending as { queue?: unknown; leases?: unknown };
  if (typeof p !== 'object' || p === null || typeof p.queue !== 'string' || !isLeaseList(p.leases))
    throw new StoreCorruptError(path, shape);
  return Object.freeze({
    leases: Object.freeze(leases),
    pending: Object.freeze({ queue: p.queue, leases: Object.freeze(p.leases) }),
  });
}

/** The leases file's text. */
function serializeLeases(file: LeasesFile): string {
  return `${JSON.stringify(file.pending ? file : { leases: file.leases }, null, 2)}\n`;
}

/** Whether `v` is an array of well-formed lease records. */
function isLeaseList(v: unknown): v is LeaseRecord[] {
  return Array.isArray(v) && v.every(isLeaseRecord);
}

/** Whether `v` is a well-formed lease record. */
function isLeaseRecord(v: unknown): v is LeaseRecord {
  const l = v as LeaseRecord;
  return (
    typeof l === 'object' &&
    l !== null &&
    typeof l.id === 'string' &&
    typeof l.line === 'string' &&
    typeof l.expiresAt === 'number' &&
    typeof l.deliveries === 'number'
  );
}
