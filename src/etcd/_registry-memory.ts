/**
 * What one process knows of an etcd registry, and the immutable snapshots it serves from it.
 *
 * Memory is fed by four sources: full reads (open, reload(), after a compaction), the watch, the data a
 * conflicting transaction returns, and this process's own commits. They arrive out of order (a commit's
 * answer can come before or after the watch reports it; a full read can be older than the watch), so
 * every key keeps the revision of what memory holds for it, and memory keeps a watermark W: every change
 * at or below W is reflected. A change is taken only if it is newer than both (a key this process
 * deleted keeps a tombstone until W passes the deletion, so a late report of an older put cannot bring
 * it back).
 *
 * Guarantees
 * - Monotonic: no key ever goes back to an older revision, and W never decreases.
 * - Read-your-writes: a published commit is in every later snapshot.
 * - A snapshot's `revision` is W when it was made: the snapshot equals the store at that revision if no
 *   key in it is newer; a writer comparing "nothing under the root changed after `revision`" therefore
 *   succeeds only on a snapshot that is exactly the store's current state.
 * - Memory is kept per key, not per machine name: two keys that decode to one name (`machines/b` and
 *   `machines/%62`, written by hand) are both tracked, and the snapshot is corrupt (ERR_REGISTRY_CORRUPT
 *   naming both) until one of them is deleted. Serving either would make a remove leave the other, and
 *   the name would come back for every process but this one.
 *
 * Not guaranteed
 * - That a snapshot is one revision of the store: a commit is published at once, while others' changes
 *   committed just before it may still be on their way through the watch (reload() waits for them).
 */
import {
  type Entry,
  emptyState,
  LOCAL_ENTRY,
  parseEntry,
  parseRegistry,
  type RegistryState,
} from '../registry/_format.js';
import { RegistryCorruptError } from '../registry/errors.js';
import type { Snapshot } from '../store/_document.js';
import type { KeyValue, WatchEvent } from './_client.js';
import type { RegistryKeys } from './_registry-keys.js';

/** A committed snapshot of the registry, with what a writer needs to guard its batch. */
export interface RegistrySnapshot extends Snapshot<RegistryState> {
  /** W when the snapshot was made (see the module comment). */
  readonly revision: bigint;
  /** The mod revision of the meta key (0: absent). */
  readonly metaMod: bigint;
  /** Why the registry cannot be served (a corrupt key, a newer version); writes refuse it too. */
  readonly error: Error | undefined;
  /** The key of machine `name` in etcd (a key written by hand need not be the encoded name). */
  keyOf(name: string): string;
}

/** What memory holds for one machine key: its entry, or a tombstone (entry and error undefined). */
interface Slot {
  /** The machine name the key decodes to. */
  readonly name: string;
  readonly mod: bigint;
  readonly entry: Entry | undefined;
  /** The key's value is not a registry entry (corrupt JSON). */
  readonly error: Error | undefined;
}

/** The mod revision of each entry memory read or published (entries never seen in etcd: 0). */
const mods = new WeakMap<Entry, bigint>();

/** The mod revision of the key `entry` was read from or committed to; 0 for an entry never stored. */
export function modOf(entry: Entry | undefined): bigint {
  return (entry && mods.get(entry)) ?? 0n;
}

/** A change to one key, from any source. */
interface Change {
  key: string;
  mod: bigint;
  /** The new value; undefined for a deletion. */
  value: string | undefined;
}

/** One registry's memory (see the module comment). */
export class RegistryMemory {
  readonly #keys: RegistryKeys;
  /** The registry's location, for errors about its keys. */
  readonly #where: string;
  #watermark = 0n;
  /** Machine slots by key. */
  readonly #machines = new Map<string, Slot>();
  /** Keys whose slot is a tombstone (dropped once the watermark passes them). */
  readonly #tombstones = new Set<string>();
  /** The meta key: its value (undefined: absent) and the revision of its last change. */
  #meta: { mod: bigint; text: string | undefined } = { mod: 0n, text: undefined };
  #snapshot: RegistrySnapshot | undefined;

  constructor(keys: RegistryKeys, where: string) {
    this.#keys = keys;
    this.#where = where;
  }

  /** W: every change at or below it is reflected. */
  get watermark(): bigint {
    return this.#watermark;
  }

  /**
   * Takes a full read of the registry made at `revision` (all its keys). Ignored if memory already
   * reflects that revision; keys memory holds at newer revisions (its own commits) are kept.
   */
  loadAll(kvs: readonly KeyValue[], revision: bigint): void {
    if (revision <= this.#watermark) return;
    const seen = new Set<string>();
    for (const kv of kvs) {
      seen.add(kv.key);
      this.#take({ key: kv.key, mod: kv.modRevision, value: kv.value }, 0n);
    }
    // What the read did not return was deleted at or before its revision, unless memory knows better.
    for (const [key, slot] of this.#machines) {
      if (!seen.has(key) && slot.mod <= revision)
        this.#set(key, { ...slot, mod: revision, entry: undefined, error: undefined });
    }
    if (!seen.has(this.#keys.meta) && this.#meta.mod <= revision)
      this.#meta = { mod: revision, text: undefined };
    this.#advance(revision);
  }

  /** Applies watch events (in revision order): each one newer than W and than its key's revision. */
  applyEvents(events: readonly WatchEvent[]): void {
    let last = this.#watermark;
    for (const e of events) {
      this.#take(
        { key: e.kv.key, mod: e.kv.modRevision, value: e.type === 'put' ? e.kv.value : undefined },
        this.#watermark,
      );
      if (e.kv.modRevision > last) last = e.kv.modRevision;
    }
    this.#advance(last);
  }

  /**
   * Applies every key changed after W as read at `revision` (what a conflicting transaction returned),
   * when no key was deleted in between (the epoch key is not among them): memory then reflects `revision`.
   */
  applyChanges(kvs: readonly KeyValue[], revision: bigint): void {
    const floor = this.#watermark;
    for (const kv of kvs) this.#take({ key: kv.key, mod: kv.modRevision, value: kv.value }, floor);
    this.#advance(revision);
  }

  /**
   * Publishes a batch this process committed at `revision`: `changes` maps each machine key written to
   * its new entry (undefined: removed). `whole` says the batch's compare covered the whole registry, so
   * memory reflects every change up to `revision`.
   */
  publish(changes: ReadonlyMap<string, Entry | undefined>, revision: bigint, whole: boolean): void {
    for (const [key, entry] of changes) {
      const what = this.#keys.classify(key);
      if (what.kind !== 'machine') continue;
      const slot = this.#machines.get(key);
      if (slot && slot.mod >= revision) continue;
      if (entry) mods.set(entry, revision);
      this.#set(key, { name: what.name, mod: revision, entry, error: undefined });
    }
    this.#advance(whole ? revision : this.#watermark);
  }

  /** Memory reflects every change up to `revision` (a compare on the whole registry held there). */
  confirm(revision: bigint): void {
    this.#advance(revision);
  }

  /** The current snapshot (made once per change). */
  snapshot(): RegistrySnapshot {
    this.#snapshot ??= this.#materialize();
    return this.#snapshot;
  }

  /** Takes one change if it is newer than `floor` and than what memory holds for its key. */
  #take(change: Change, floor: bigint): void {
    if (change.mod <= floor) return;
    const what = this.#keys.classify(change.key);
    if (what.kind === 'machine') {
      const slot = this.#machines.get(change.key);
      if (slot && slot.mod >= change.mod) return;
      this.#set(change.key, this.#slot(what.name, change));
    } else if (what.kind === 'meta') {
      if (this.#meta.mod >= change.mod) return;
      this.#meta = { mod: change.mod, text: change.value };
      this.#snapshot = undefined;
    }
  }

  /** A slot for a change of machine `name`'s key, its value parsed (or its corruption recorded). */
  #slot(name: string, change: Change): Slot {
    if (change.value === undefined) return { name, mod: change.mod, entry: undefined, error: undefined };
    try {
      const entry = parseEntry(name, change.value, `${this.#where} key ${change.key}`);
      mods.set(entry, change.mod);
      return { name, mod: change.mod, entry, error: undefined };
    } catch (err) {
      return { name, mod: change.mod, entry: undefined, error: err as Error };
    }
  }

  #set(key: string, slot: Slot): void {
    this.#machines.set(key, slot);
    if (slot.entry || slot.error) this.#tombstones.delete(key);
    else this.#tombstones.add(key);
    this.#snapshot = undefined;
  }

  /** Raises W to `revision` (never lowers it) and drops the tombstones it passed. */
  #advance(revision: bigint): void {
    if (revision <= this.#watermark) return;
    this.#watermark = revision;
    for (const key of this.#tombstones) {
      if (this.#machines.get(key)!.mod <= revision) {
        this.#machines.delete(key);
        this.#tombstones.delete(key);
      }
    }
    this.#snapshot = undefined;
  }

  /** Builds the snapshot of what memory holds now. */
  #materialize(): RegistrySnapshot {
    let error: Error | undefined;
    let top: RegistryState = emptyState();
    if (this.#meta.text !== undefined) {
      try {
        top = parseRegistry(this.#meta.text, `${this.#where} key ${this.#keys.meta}`, undefined, {
          topLevelOnly: true,
        });
      } catch (err) {
        error = err as Error;
      }
    }
    const entries = new Map<string, Entry>();
    /** The key of each machine memory holds (live keys only). */
    const keyOf = new Map<string, string>();
    for (const [key, slot] of this.#machines) {
      if (!slot.entry && !slot.error) continue; // a tombstone
      const other = keyOf.get(slot.name);
      if (other !== undefined) {
        const [a, b] = [other, key].sort();
        error ??= new RegistryCorruptError(
          this.#where,
          `keys ${a} and ${b} both hold machine ${JSON.stringify(slot.name)}; delete one of them`,
        );
      }
      keyOf.set(slot.name, key);
      if (slot.entry) entries.set(slot.name, slot.entry);
      error ??= slot.error;
    }
    if (!entries.has('local')) entries.set('local', LOCAL_ENTRY);
    const keys = this.#keys;
    return {
      state: { version: top.version, entries, extra: top.extra },
      revision: this.#watermark,
      metaMod: this.#meta.text === undefined ? 0n : this.#meta.mod,
      error,
      keyOf: (name) => keyOf.get(name) ?? keys.machine(name),
    };
  }
}
