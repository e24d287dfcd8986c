/** townlock/registry: the shared machine registry. See docs/locking.md for its consistency model. */
export {
  InvalidMachineError,
  LocalMachineError,
  MachineNotFoundError,
  RegistryCorruptError,
  RegistryIoError,
  RegistryVersionError,
} from './errors.js';
export { type Machine, validateMachine } from './machine.js';
export { MachineRegistry, type RegistryDraft, type RegistryOptions } from './registry.js';
