/**
 * The registry file format, byte-compatible with the Go tool: `{"version": 1, "machines": {...}}`, 2-space
 * indented like json.MarshalIndent, machines sorted by name (byte order, as Go sorts map keys), every Go
 * field written, `<`, `>` and `&` escaped as Go's encoder does, no trailing newline. Fields this version
 * does not know, top-level or per machine, are carried through every rewrite.
 */
import { JsonParseError } from '../atomic/errors.js';
import { parseJson } from '../atomic/read-json.js';
import { RegistryCorruptError, RegistryVersionError } from './errors.js';
import { type StoredMachine, toFileEntry } from './machine.js';

/** The newest file version this code reads and writes. */
export const REGISTRY_VERSION = 1;

/** A parsed registry file. */
export interface RegistryState {
  version: number;
  machines: Map<string, StoredMachine>;
  /** Top-level fields other than `version` and `machines`, in file order. */
  extra: Record<string, unknown>;
}

/** The state of a registry whose file does not exist yet: just `local`. */
export function emptyState(): RegistryState {
  const state: RegistryState = { version: REGISTRY_VERSION, machines: new Map(), extra: {} };
  ensureLocal(state);
  return state;
}

/** Adds the `local` machine if missing, as the Go tool does on load. */
function ensureLocal(state: RegistryState): void {
  if (!state.machines.has('local')) {
    state.machines.set('local', { machine: { name: 'local', type: 'local' }, extra: {} });
  }
}

/** Parses registry text; throws RegistryCorruptError or RegistryVersionError, never returns partial data. */
export function parseRegistry(text: string, path: string): RegistryState {
  if (text.trim() === '') throw new RegistryCorruptError(path, 'the file is empty', 0);
  let data: unknown;
  try {
    data = parseJson(text, path);
  } catch (err) {
    if (!(err instanceof JsonParseError)) throw err;
    const where = `invalid JSON at line ${err.line}, column ${err.column}`;
    throw new RegistryCorruptError(path, `${where} (position ${err.position})`, err.position, err);
  }
  if (!isObject(data)) throw new RegistryCorruptError(path, 'the top level is not a JSON object');
  const { version = REGISTRY_VERSION, machines = {}, ...extra } = data;
  if (typeof version !== 'number' || !Number.isInteger(version)) {
    throw new RegistryCorruptError(path, `"version" must be an integer, found ${JSON.stringify(version)}`);
  }
  if (version > REGISTRY_VERSION) throw new RegistryVersionError(path, version, REGISTRY_VERSION);
  if (machines !== null && !isObject(machines))
    throw new RegistryCorruptError(path, '"machines" is not an object');
  const state: RegistryState = { version, machines: new Map(), extra };
  for (const [key, entry] of Object.entries(machines ?? {})) {
    state.machines.set(key, parseEntry(key, entry, path));
  }
  ensureLocal(state);
  return state;
}

/** Reads one machine entry leniently (as Go does: the map key is the name), checking only types. */
function parseEntry(key: string, entry: unknown, path: string): StoredMachine {
  if (!isObject(entry))
    throw new RegistryCorruptError(path, `machine ${JSON.stringify(key)} is not an object`);
  const { name: _name, type, host, key_path, town_path, ...extra } = entry;
  for (const [field, value] of Object.entries({ type, host, key_path, town_path })) {
    if (value !== undefined && value !== null && typeof value !== 'string') {
      throw new RegistryCorruptError(path, `machine ${JSON.stringify(key)} has a non-string "${field}"`);
    }
  }
  // A type this version does not know (a newer tool's) is kept as written; connection() rejects it.
  const machine = { name: key, type: (type ?? '') as 'local' | 'ssh' } as StoredMachine['machine'];
  if (host) machine.host = host as string;
  if (key_path) machine.keyPath = key_path as string;
  if (town_path) machine.townPath = town_path as string;
  return { machine, extra };
}

/** Serializes the state in the Go tool's exact layout. */
export function serializeRegistry(state: RegistryState): string {
  const names = [...state.machines.keys()].sort(byteOrder);
  const entries = names.map((name) => {
    const fields = Object.entries(toFileEntry(state.machines.get(name)!));
    return `    ${JSON.stringify(name)}: ${object(fields, '    ')}`;
  });
  const machines = entries.length === 0 ? '{}' : `{\n${entries.join(',\n')}\n  }`;
  const top: [string, unknown][] = [
    ['version', Math.max(state.version, REGISTRY_VERSION)],
    ['machines', RAW(machines)],
    ...Object.entries(state.extra),
  ];
  return escapeLikeGo(object(top, ''));
}

/** Marks already-serialized JSON so {@link object} inserts it as is. */
class Raw {
  constructor(readonly text: string) {}
}
const RAW = (text: string) => new Raw(text);

/** Serializes ordered fields as an indented object at the given indentation. */
function object(fields: [string, unknown][], indent: string): string {
  if (fields.length === 0) return '{}';
  const inner = `${indent}  `;
  const lines = fields.map(([k, v]) => {
    const value = v instanceof Raw ? v.text : JSON.stringify(v, null, 2).replace(/\n/g, `\n${inner}`);
    return `${inner}${JSON.stringify(k)}: ${value}`;
  });
  return `{\n${lines.join(',\n')}\n${indent}}`;
}

/** Go's encoding/json escapes these for HTML safety; doing the same keeps files byte-identical. */
function escapeLikeGo(json: string): string {
  return json.replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** Compares strings by UTF-8 bytes, as Go's sort of map keys does. */
function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/** Whether `v` is a plain JSON object. */
function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
