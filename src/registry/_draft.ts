/**
 * The draft an update callback edits: the registry's machines with an undo log, so that a callback that
 * throws can be rolled back without copying the registry.
 */
import type { RegistryState } from './_format.js';
import { LocalMachineError, MachineNotFoundError } from './errors.js';
import { type Machine, type StoredMachine, validateMachine } from './machine.js';

/** The view of the registry an {@link MachineRegistry.update} callback edits. */
export interface RegistryDraft {
  /** The machine named `name`; throws MachineNotFoundError. */
  get(name: string): Machine;
  has(name: string): boolean;
  /** All machines, sorted by name. */
  list(): Machine[];
  /** Adds or replaces a machine (validated; unknown fields of a replaced machine are kept). */
  add(machine: Machine): void;
  /** Removes a machine; throws MachineNotFoundError, or LocalMachineError for `local`. */
  remove(name: string): void;
}

/** Builds the draft an update callback edits; every change pushes its inverse onto `undo`. */
export function makeDraft(state: RegistryState, undo: (() => void)[]): RegistryDraft {
  const { machines } = state;
  const restore = (name: string, previous: StoredMachine | undefined) => () => {
    if (previous) machines.set(name, previous);
    else machines.delete(name);
  };
  return {
    get(name) {
      const stored = machines.get(name);
      if (!stored) throw new MachineNotFoundError(name);
      return { ...stored.machine };
    },
    has: (name) => machines.has(name),
    list: () => sortedMachines(state),
    add(machine) {
      const clean = validateMachine(machine);
      if (clean.name === 'local' && clean.type !== 'local')
        throw new LocalMachineError('changed to another type');
      const previous = machines.get(clean.name);
      machines.set(clean.name, { machine: clean, extra: previous?.extra ?? {} });
      undo.push(restore(clean.name, previous));
    },
    remove(name) {
      if (name === 'local') throw new LocalMachineError('removed');
      const previous = machines.get(name);
      if (!previous) throw new MachineNotFoundError(name);
      machines.delete(name);
      undo.push(restore(name, previous));
    },
  };
}

/** Copies of all machines, sorted by name. */
export function sortedMachines(state: RegistryState): Machine[] {
  return [...state.machines.values()]
    .map((s) => ({ ...s.machine }))
    .sort((a, b) => (a.name < b.name ? -1 : 1));
}
