/**
 * The draft an update callback edits: a private copy of the committed machines with an undo log, so a
 * callback that throws is rolled back without touching the committed snapshot or the other callbacks of
 * its batch. Entries are immutable; the draft only swaps them in its own map.
 */

import { InvalidOptionError } from '../errors.js';
import type { Draft } from '../store/_group-commit.js';
import { DraftClosedError } from '../store/errors.js';
import type { Entry, RegistryState } from './_format.js';
import { type InvalidMachineError, LocalMachineError, MachineNotFoundError } from './errors.js';
import { type Machine, validateMachine } from './machine.js';

/** The view of the registry an {@link MachineRegistry.update} callback edits. */
export interface RegistryDraft {
  /** The machine named `name`; throws MachineNotFoundError (or InvalidMachineError for an invalid entry). */
  get(name: string): Machine;
  /** Whether a valid machine named `name` exists. */
  has(name: string): boolean;
  /** All valid machines, sorted by name. */
  list(): Machine[];
  /** Adds or replaces a machine (validated; unknown fields of a replaced machine are kept). */
  add(machine: Machine): void;
  /** Removes a machine (also an invalid entry); throws MachineNotFoundError, or LocalMachineError for `local`. */
  remove(name: string): void;
}

/** One machine a batch changed: its entry in the base and now (undefined: absent). */
export interface EntryChange {
  readonly name: string;
  readonly was: Entry | undefined;
  readonly now: Entry | undefined;
}

/** The draft of one batch, as the group commit holds it: also says what the batch changed so far. */
export interface RegistryBatchDraft extends Draft<RegistryState, RegistryDraft> {
  /**
   * Each machine whose entry is no longer the base's (a replaced entry counts even if equal), in the
   * order first written; costs one step per machine the batch wrote, not per machine of the registry.
   */
  changes(): Iterable<EntryChange>;
}

/**
 * Opens a draft over a committed state. Each callback gets its own view; a view is closed when its
 * callback settles (DraftClosedError from then on), so a draft kept past its callback can never change
 * another callback's work or a committed snapshot.
 */
export function beginDraft(base: RegistryState, label: string): EntryDraft {
  const entries = new Map(base.entries);
  let undo: [name: string, previous: Entry | undefined][] = [];
  let changes = 0;
  /** The machines written and not (yet) back to their base entry. */
  const dirty = new Set<string>();
  const set = (name: string, entry: Entry | undefined) => {
    if (entry) entries.set(name, entry);
    else entries.delete(name);
    if (entry === base.entries.get(name)) dirty.delete(name);
    else dirty.add(name);
  };
  const put = (name: string, entry: Entry | undefined) => {
    undo.push([name, entries.get(name)]);
    set(name, entry);
    changes++;
  };
  let open = { closed: false };
  /** A view for one callback; every call checks that the callback has not settled yet. */
  const viewFor = (state: { closed: boolean }): RegistryDraft => {
    const live = () => {
      if (state.closed) throw new DraftClosedError(label);
    };
    return {
      get(name) {
        live();
        return machineOf(entries, checkedName(name));
      },
      has(name) {
        live();
        return entries.get(name)?.valid === true;
      },
      list() {
        live();
        return sortedMachines(entries, false);
      },
      add(machine) {
        live();
        const clean = validateMachine(machine);
        if (clean.name === 'local' && clean.type !== 'local')
          throw new LocalMachineError('changed to another type');
        const previous = entries.get(clean.name);
        put(clean.name, {
          valid: true,
          machine: Object.freeze(clean),
          extra: previous?.valid ? previous.extra : [],
        });
      },
      remove(name) {
        live();
        checkedName(name);
        if (name === 'local') throw new LocalMachineError('removed');
        if (!entries.has(name)) throw new MachineNotFoundError(name);
        put(name, undefined);
      },
    };
  };
  let view = viewFor(open);
  return {
    get view() {
      return view;
    },
    entries: () => entries,
    putEntry: (name, entry) => put(name, entry),
    mark: () => {
      open.closed = true;
      open = { closed: false };
      view = viewFor(open);
      undo = [];
    },
    rollback: () => {
      open.closed = true;
      for (const [name, previous] of undo.reverse()) set(name, previous);
      changes -= undo.length;
      undo = [];
    },
    finish: () => {
      open.closed = true;
      return { next: { version: base.version, entries, extra: base.extra }, changed: changes > 0 };
    },
    *changes() {
      for (const name of dirty) {
        const was = base.entries.get(name);
        const now = entries.get(name);
        if (was !== now) yield { name, was, now };
      }
    },
  };
}

/**
 * The draft with whole-entry access, for copying entries between registries as they are (unknown
 * fields and invalid entries included): `machine import` and `machine export`. Not part of the API.
 */
export interface EntryDraft extends RegistryBatchDraft {
  /** The draft's entries now. */
  entries(): ReadonlyMap<string, Entry>;
  /** Puts `entry` under `name` as it is, or removes the entry (`undefined`); undone on rollback. */
  putEntry(name: string, entry: Entry | undefined): void;
}

/** A copy of the valid machine `name`; MachineNotFoundError, or InvalidMachineError for a bad entry. */
export function machineOf(entries: ReadonlyMap<string, Entry>, name: string): Machine {
  const entry = entries.get(name);
  if (!entry) throw new MachineNotFoundError(name);
  if (!entry.valid) throw entry.problem;
  return { ...entry.machine };
}

/** The valid machines of committed states, sorted, computed once per state. */
const sortedCache = new WeakMap<ReadonlyMap<string, Entry>, readonly Readonly<Machine>[]>();

/** Copies of all valid machines, sorted by name; `committed` maps never change, so their order is cached. */
export function sortedMachines(entries: ReadonlyMap<string, Entry>, committed = true): Machine[] {
  let sorted = committed ? sortedCache.get(entries) : undefined;
  if (!sorted) {
    sorted = [...entries.values()]
      .flatMap((e) => (e.valid ? [e.machine] : []))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    if (committed) sortedCache.set(entries, sorted);
  }
  return sorted.map((m) => ({ ...m }));
}

/** The entries that failed validation, with their reasons. */
export function invalidEntries(entries: ReadonlyMap<string, Entry>): InvalidMachineError[] {
  const problems = [...entries.values()].flatMap((e) => (e.valid ? [] : [e.problem]));
  // Sorted by name, as list() is: the map's order depends on how the state was last built.
  return problems.sort((a, b) => (a.machine! < b.machine! ? -1 : a.machine! > b.machine! ? 1 : 0));
}

/** `name` if it is a string; anything else is ERR_INVALID_OPTION. */
function checkedName(name: unknown): string {
  if (typeof name !== 'string') throw new InvalidOptionError('name', name, 'a machine name (a string)');
  return name;
}
