/**
 * The registry file format, byte-compatible with the Go tool: `{"version": 1, "machines": {...}}`, 2-space
 * indented like json.MarshalIndent, machines sorted by name (byte order, as Go sorts map keys), every Go
 * field written, `<`, `>` and `&` escaped as Go's encoder does, no trailing newline. Fields this version
 * does not know, top-level or per machine, are carried through every rewrite.
 */
import { JsonParseError } from '../atomic/errors.js';
import { parseJson } from '../atomic/read-json.js';
import { RegistryCorruptError, RegistryVersionError } from './errors.js';
import type { StoredMachine } from './machine.js';

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
  /** A known string field, or undefined; anything but a string or null is corruption. */
  const field = (name: string): string | undefined => {
    const value = entry[name];
    if (value === undefined || value === null || value === '') return undefined;
    if (typeof value !== 'string') {
      throw new RegistryCorruptError(path, `machine ${JSON.stringify(key)} has a non-string "${name}"`);
    }
    return value;
  };
  // A type this version does not know (a newer tool's) is kept as written; connection() rejects it.
  const machine = { name: key, type: (field('type') ?? '') as 'local' | 'ssh' } as StoredMachine['machine'];
  const host = field('host');
  const keyPath = field('key_path');
  const townPath = field('town_path');
  if (host) machine.host = host;
  if (keyPath) machine.keyPath = keyPath;
  if (townPath) machine.townPath = townPath;
  // No prototype, so a "__proto__" field from the file stays an ordinary field.
  const extra: Record<string, unknown> = Object.create(null);
  for (const k of Object.keys(entry)) if (!KNOWN.has(k)) extra[k] = entry[k];
  return { machine, extra };
}

/** The per-machine fields of the Go format. */
const KNOWN = new Set(['name', 'type', 'host', 'key_path', 'town_path']);

/** Serializes the state in the Go tool's exact layout. */
export function serializeRegistry(state: RegistryState): string {
  const names = sortBytewise([...state.machines.keys()]);
  // Built by concatenation: this runs under the write lock for every write, so it must stay cheap.
  let machines = '';
  for (const name of names) {
    const { machine, extra } = state.machines.get(name)!;
    if (machines !== '') machines += ',\n';
    machines += `    ${quote(name)}: {\n`;
    machines += `      "name": ${quote(machine.name)},\n`;
    machines += `      "type": ${quote(machine.type)},\n`;
    machines += `      "host": ${quote(machine.host ?? '')},\n`;
    machines += `      "key_path": ${quote(machine.keyPath ?? '')},\n`;
    machines += `      "town_path": ${quote(machine.townPath ?? '')}`;
    for (const [k, v] of Object.entries(extra))
      machines += `,\n      ${JSON.stringify(k)}: ${indented(v, '      ')}`;
    machines += '\n    }';
  }
  const version = Math.max(state.version, REGISTRY_VERSION);
  let out = `{\n  "version": ${version},\n  "machines": ${machines === '' ? '{}' : `{\n${machines}\n  }`}`;
  for (const [k, v] of Object.entries(state.extra)) out += `,\n  ${JSON.stringify(k)}: ${indented(v, '  ')}`;
  return escapeLikeGo(`${out}\n}`);
}

/** A JSON string literal; skips JSON.stringify for the common strings that need no escaping. */
function quote(s: string): string {
  return /^[\w .@:/~+,=-]*$/.test(s) ? `"${s}"` : JSON.stringify(s);
}

/** JSON for a value nested at `indent`, in json.MarshalIndent's two-space layout. */
function indented(value: unknown, indent: string): string {
  return JSON.stringify(value, null, 2).replace(/\n/g, `\n${indent}`);
}

/** Sorts by UTF-8 bytes, as Go sorts map keys; plain comparison agrees below U+D800, the common case. */
function sortBytewise(names: string[]): string[] {
  if (names.every((n) => !/[\ud800-\uffff]/.test(n)))
    return names.sort((x, y) => (x < y ? -1 : x > y ? 1 : 0));
  const bytes = new Map(names.map((n) => [n, Buffer.from(n)]));
  return names.sort((x, y) => Buffer.compare(bytes.get(x)!, bytes.get(y)!));
}

/** Go's encoding/json escapes these for HTML safety; doing the same keeps files byte-identical. */
function escapeLikeGo(json: string): string {
  return json.replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** Whether `v` is a plain JSON object. */
function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
