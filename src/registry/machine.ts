/** The Machine type, its validation, and its form in the registry file (the Go tool's format). */
import { describe } from '../errors.js';
import { InvalidMachineError } from './errors.js';

/** A machine in the registry. */
export interface Machine {
  /** 1-63 characters of `[A-Za-z0-9._-]`, not starting with `.` or `-`. */
  name: string;
  /** `local` (this machine) or `ssh`. */
  type: 'local' | 'ssh';
  /** For ssh: `[user@]host[:port]`. */
  host?: string;
  /** For ssh: the private key file (`~` is expanded when connecting). */
  keyPath?: string;
  /** Where the town lives on that machine. */
  townPath?: string;
}

const NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,62}$/;
// [user@]host[:port]; host is a DNS name, IPv4 or a bracketed IPv6 address. No leading '-', so a host
// such as "-oProxyCommand=..." can never be taken for an ssh option.
const HOST =
  /^(?:[A-Za-z0-9._][A-Za-z0-9._-]{0,63}@)?(?:[A-Za-z0-9_][A-Za-z0-9._-]{0,252}|\[[0-9A-Fa-f:.]+\])(?::(\d{1,5}))?$/;

/** Checks a machine; throws {@link InvalidMachineError} naming the field. Returns a clean copy. */
export function validateMachine(input: unknown): Machine {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    throw new InvalidMachineError('machine', `expected an object, received ${describe(input)}`);
  }
  const m = input as Record<string, unknown>;
  if (typeof m.name !== 'string' || m.name === '') throw new InvalidMachineError('name', 'is required');
  if (!NAME.test(m.name)) {
    throw new InvalidMachineError(
      'name',
      `${JSON.stringify(m.name)} must be 1-63 characters of A-Z a-z 0-9 . _ - and not start with . or -`,
    );
  }
  if (m.type !== 'local' && m.type !== 'ssh') {
    throw new InvalidMachineError('type', `must be "local" or "ssh", received ${describe(m.type)}`);
  }
  for (const field of ['host', 'keyPath', 'townPath'] as const) {
    const v = m[field];
    if (v === undefined || v === '') continue;
    if (typeof v !== 'string')
      throw new InvalidMachineError(field, `must be a string, received ${describe(v)}`);
    if (hasControlCharacter(v)) throw new InvalidMachineError(field, 'must not contain control characters');
  }
  if (m.type === 'ssh') {
    if (typeof m.host !== 'string' || m.host === '')
      throw new InvalidMachineError('host', 'is required for ssh machines');
    const port = HOST.exec(m.host)?.[1];
    if (port !== undefined && (Number(port) < 1 || Number(port) > 65535)) {
      throw new InvalidMachineError('host', `${JSON.stringify(m.host)}: port ${port} is not 1-65535`);
    }
    if (!HOST.test(m.host)) {
      throw new InvalidMachineError(
        'host',
        `${JSON.stringify(m.host)} must be [user@]host[:port] with no leading "-", spaces or control characters`,
      );
    }
  }
  const clean: Machine = { name: m.name, type: m.type };
  if (typeof m.host === 'string' && m.host !== '') clean.host = m.host;
  if (typeof m.keyPath === 'string' && m.keyPath !== '') clean.keyPath = m.keyPath;
  if (typeof m.townPath === 'string' && m.townPath !== '') clean.townPath = m.townPath;
  return clean;
}

/** A machine as stored: our fields plus any fields a newer tool wrote, kept verbatim. */
export interface StoredMachine {
  machine: Machine;
  extra: Record<string, unknown>;
}

/** Whether `s` contains an ASCII control character (newline, NUL, escape, DEL, ...). */
function hasControlCharacter(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}
