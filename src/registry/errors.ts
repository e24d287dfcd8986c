/** Errors thrown by the registry module. */
import { TownlockError } from '../errors.js';
import { ioMessage } from '../store/errors.js';

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

/** The registry file could not be read or written (permissions, a directory or FIFO in its place, ...). */
export class RegistryIoError extends TownlockError {
  /** Whether reading or writing the file failed. */
  readonly action: 'read' | 'write';

  constructor(path: string, action: 'read' | 'write', cause: NodeJS.ErrnoException | string) {
    super('ERR_REGISTRY_IO', ioMessage(path, `${action} registry`, cause), {
      path,
      cause: typeof cause === 'string' ? undefined : cause,
    });
    this.action = action;
  }
}
RegistryIoError.prototype.name = 'RegistryIoError';

/** A machine failed validation; `field` names the offending field, `machine` the entry when it came from the file. */
export class InvalidMachineError extends TownlockError {
  /** The field that is wrong: `name`, `type`, `host`, `keyPath`, `townPath` or `machine` (the whole entry). */
  readonly field: string;
  /** What is wrong with it. */
  readonly detail: string;
  /** The machine's name (its key in the file), for entries read from the file. */
  readonly machine: string | undefined;

  constructor(field: string, detail: string, machine?: string) {
    const who = machine === undefined ? '' : ` ${JSON.stringify(machine)}`;
    super('ERR_INVALID_MACHINE', `Invalid machine${who} ${field}: ${detail}`);
    this.field = field;
    this.detail = detail;
    this.machine = machine;
  }
}
InvalidMachineError.prototype.name = 'InvalidMachineError';

/**
 * A registry write was made from inside an update() callback of the same registry file
 * (`ERR_REGISTRY_REENTRANT`): it would wait for the batch that waits for it. Use the draft instead.
 */
export class RegistryReentrantError extends TownlockError {
  constructor(path: string) {
    super(
      'ERR_REGISTRY_REENTRANT',
      `Cannot write registry ${path} from inside one of its own update() callbacks; change the draft the callback receives instead`,
      { path },
    );
  }
}
RegistryReentrantError.prototype.name = 'RegistryReentrantError';

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
