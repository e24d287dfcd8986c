/** Errors thrown by the registry module. */
import { TownlockError } from '../errors.js';

/** The registry file is not a valid registry (bad JSON, wrong shape); it is never overwritten. */
export class RegistryCorruptError extends TownlockError {
  /** Offset of the JSON syntax error, when the problem is one. */
  readonly position: number | undefined;

  constructor(path: string, detail: string, position?: number, cause?: unknown) {
    super(
      'ERR_REGISTRY_CORRUPT',
      `Registry ${path} is corrupt: ${detail}; fix or move it, townlock will not overwrite it`,
      {
        path,
        cause,
      },
    );
    this.position = position;
  }
}
RegistryCorruptError.prototype.name = 'RegistryCorruptError';

/** The registry file was written by a newer tool (higher `version`); townlock will not rewrite it. */
export class RegistryVersionError extends TownlockError {
  /** The version found in the file. */
  readonly version: number;

  constructor(path: string, version: number, supported: number) {
    super(
      'ERR_REGISTRY_VERSION',
      `Registry ${path} has version ${version}; this townlock understands up to version ${supported}. Upgrade townlock.`,
      { path },
    );
    this.version = version;
  }
}
RegistryVersionError.prototype.name = 'RegistryVersionError';

/** The registry file could not be read or written (permissions, a directory in its place, ...). */
export class RegistryIoError extends TownlockError {
  constructor(path: string, action: 'read' | 'write', cause: NodeJS.ErrnoException) {
    const why =
      cause.code === 'EACCES' || cause.code === 'EPERM'
        ? 'permission denied'
        : cause.code === 'EISDIR'
          ? 'it is a directory'
          : cause.code === 'ENOTDIR'
            ? 'a parent of it is not a directory'
            : cause.message;
    super('ERR_REGISTRY_IO', `Cannot ${action} registry ${path}: ${why} (${cause.code ?? 'error'})`, {
      path,
      cause,
    });
  }
}
RegistryIoError.prototype.name = 'RegistryIoError';

/** A machine failed validation; `field` names the offending field. */
export class InvalidMachineError extends TownlockError {
  /** The field that is wrong: `name`, `type`, `host`, `keyPath` or `townPath`. */
  readonly field: string;

  constructor(field: string, message: string) {
    super('ERR_INVALID_MACHINE', `Invalid machine ${field}: ${message}`);
    this.field = field;
  }
}
InvalidMachineError.prototype.name = 'InvalidMachineError';

/** No machine has that name. */
export class MachineNotFoundError extends TownlockError {
  /** The name asked for. */
  readonly machine: string;

  constructor(name: string) {
    super('ERR_MACHINE_NOT_FOUND', `Machine not found: ${JSON.stringify(name)}`);
    this.machine = name;
  }
}
MachineNotFoundError.prototype.name = 'MachineNotFoundError';

/** The `local` machine cannot be removed (or changed to another type). */
export class LocalMachineError extends TownlockError {
  constructor(action: string) {
    super('ERR_LOCAL_MACHINE', `The "local" machine cannot be ${action}`);
  }
}
LocalMachineError.prototype.name = 'LocalMachineError';
