/** townlock/registry: the shared machine registry. See docs/locking.md for its consistency model. */
export {
  InvalidMachineError,
  LocalMachineError,
  MachineNotFoundError,
  RegistryCorruptError,
  RegistryIoError,
  RegistryReentrantError,
  RegistryVersionError,
} from './errors.js';
export { type Machine, validateMachine } from './machine.js';
export {
  MachineRegistry,
  type Registry,
  RegistryBase,
  type RegistryDraft,
  type RegistryOptions,
} from './registry.js';
