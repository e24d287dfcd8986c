/**
 * The registry file format, byte-compatible with the Go tool: `{"version": 1, "machines": {...}}`, 2-space
 * indented like json.MarshalIndent, machines sorted by name (byte order, as Go sorts map keys), every Go
 * field written, `<`, `>` and `&` escaped as Go's encoder does, no trailing newline.
 *
 * What this version does not understand is kept byte for byte: unknown fields (top-level or per machine)
 * keep their raw JSON text (so 9007199254740993 stays ...993), and machine entries that fail validation
 * (a bad name, an option-like host, `local` typed as ssh, a type from a newer tool) are kept whole, are
 * not served, and are reported. Nesting deeper than Go's own limit is corruption, as it is for Go.
 *
 * The etcd store keeps each machine under a key of its own: entryText() and parseEntry() are one entry's
 * half of the same format, and the file's top level (version, unknown fields) is its meta key.
 */
import { nestsDeeperThan, objectMembers, skipValue } from '../atomic/_json-scan.js';
import { JsonParseError } from '../atomic/errors.js';
import { parseJson } from '../atomic/read-json.js';
import { describe } from '../errors.js';
import {
  changedWindow,
  diffBounds,
  isIndex,
  type Layout,
  layoutOf,
  scanParsed,
  scanPending,
  scanRun,
  setLayout,
  setParsed,
} from './_layout.js';
import { runAtOnce, runInPieces } from './_steps.js';
import { InvalidMachineError, RegistryCorruptError, RegistryVersionError } from './errors.js';
import { type Machine, validateMachine } from './machine.js';

/** The newest file version this code reads and writes. */
export const REGISTRY_VERSION = 1;

/** Go's encoding/json refuses deeper nesting; so do we (and nothing recursive ever meets deeper input). */
export const MAX_DEPTH = 10_000;

/** A field kept as its raw JSON text. */
export type RawField = readonly [key: string, raw: string];

/** One entry of the machines map: a valid machine, or an entry kept as written but not served. */
export type Entry =
  | { readonly valid: true; readonly machine: Readonly<Machine>; readonly extra: readonly RawField[] }
  | { readonly valid: false; readonly raw: string; readonly problem: InvalidMachineError };

/** A parsed registry. Immutable once published as a snapshot. */
export interface RegistryState {
  readonly version: number;
  readonly entries: ReadonlyMap<string, Entry>;
  /** Top-level fields other than `version` and `machines`, in file order. */
  readonly extra: readonly RawField[];
}

/** The built-in machine for this host. */
export const LOCAL_ENTRY: Entry = Object.freeze({
  valid: true,
  machine: Object.freeze({ name: 'local', type: 'local' as const }),
  extra: [],
});

/** The state of a registry whose file does not exist yet: just `local`. */
export function emptyState(): RegistryState {
  return { version: REGISTRY_VERSION, entries: new Map([['local', LOCAL_ENTRY]]), extra: [] };
}

/**
 * Parses registry bytes; throws RegistryCorruptError or RegistryVersionError, never returns partial data.
 * `previous` (the state this file last had) lets unchanged machines keep their validated entries, so a
 * re-read after another process added one machine does not validate all the others again.
 */
export function parseRegistry(
  bytes: Buffer | string,
  path: string,
  previous?: RegistryState,
  options: ParseOptions = {},
): RegistryState {
  const changed = parseChanged(bytes, path, previous, options.previousBytes);
  if (changed) return changed;
  return runAtOnce(parseSteps(bytes, path, previous, options));
}

/** parseRegistry, yielding to the event loop every few thousand machines (open() and reload()). */
export async function parseRegistryAsync(
  bytes: Buffer | string,
  path: string,
  previous?: RegistryState,
  options: ParseOptions = {},
): Promise<RegistryState> {
  // The previous version's layout, if still to be scanned, is scanned in pieces here, not in one below.
  if (previous && options.previousBytes) await scanPending(previous, options.previousBytes);
  const changed = parseChanged(bytes, path, previous, options.previousBytes);
  if (changed) return changed;
  const state = await runInPieces(parseSteps(bytes, path, previous, options));
  // The layout the next re-read will need, scanned now in pieces rather than then in one.
  if (Buffer.isBuffer(bytes) && !options.topLevelOnly) await scanParsed(state, bytes);
  return state;
}

/** How a registry text is read. */
export interface ParseOptions {
  /**
   * The text is the top level alone (the etcd store's meta key), which has no "machines". A registry
   * *file* must have it: a JSON object without it is some other file (a package.json, a tsconfig.json)
   * that townlock must never take for an empty registry and overwrite.
   */
  topLevelOnly?: boolean;
  /**
   * The bytes `previous` was read from (or written as): when given, a file that differs from them only
   * inside `machines` is parsed by its changed members alone (see _layout.ts).
   */
  previousBytes?: Buffer;
}

/** How many machines are read between two yields of parseRegistryAsync. */
const CHUNK = 2_000;

/** The parse, as steps: it yields after every CHUNK machines and returns the state. */
function* parseSteps(
  bytes: Buffer | string,
  path: string,
  previous?: RegistryState,
  options: ParseOptions = {},
): Generator<void, RegistryState> {
  const text = typeof bytes === 'string' ? bytes : bytes.toString('utf8');
  if (text.trim() === '') throw new RegistryCorruptError(path, 'the file is empty', 0);
  const data = parseText(text, path);
  if (!isObject(data)) throw new RegistryCorruptError(path, 'the top level is not a JSON object', 0);
  if (!options.topLevelOnly && !Object.hasOwn(data, 'machines'))
    throw new RegistryCorruptError(
      path,
      'it is not a registry file: it has no "machines" (a registry is {"version": 1, "machines": {...}})',
      0,
    );
  const { version = REGISTRY_VERSION, machines = {} } = data;
  if (typeof version !== 'number' || !Number.isInteger(version)) {
    throw new RegistryCorruptError(path, `"version" must be an integer, found ${describe(version)}`);
  }
  if (version > REGISTRY_VERSION) throw new RegistryVersionError(path, version, REGISTRY_VERSION);
  if (machines !== null && !isObject(machines))
    throw new RegistryCorruptError(path, '"machines" is not an object');

  // Raw texts are needed only for what we do not understand; the common file needs no scan at all.
  let top: Map<string, Span> | undefined;
  let inMachines: Map<string, Span> | undefined;
  const topSpans = () => (top ??= spans(text, 0));
  const machineSpans = () => {
    if (!inMachines) {
      const m = topSpans().get('machines')!;
      inMachines = spans(text, m.start);
    }
    return inMachines;
  };

  const extra: RawField[] = [];
  for (const key of Object.keys(data)) {
    if (key === 'version' || key === 'machines') continue;
    tooDeep(data[key], () => topSpans().get(key)!, path);
    extra.push([key, rawOf(text, topSpans().get(key)!)]);
  }
  const entries = new Map<string, Entry>();
  const before = previous?.entries;
  let count = 0;
  const all = (machines ?? {}) as Record<string, unknown>;
  // Object.keys, not Object.entries: no [key, value] array per machine (~3 ms at 10,000 machines).
  for (const key of Object.keys(all)) {
    const value = all[key];
    if (++count % CHUNK === 0) yield;
    const known = before?.get(key);
    if (known?.valid && known.extra.length === 0 && unchanged(known.machine, key, value)) {
      entries.set(key, known);
      continue;
    }
    entries.set(
      key,
      toEntry(key, value, text, () => machineSpans().get(key)!, path),
    );
  }
  if (!entries.has('local')) entries.set('local', LOCAL_ENTRY);
  const state = { version, entries, extra };
  if (!options.topLevelOnly && Buffer.isBuffer(bytes)) setParsed(state, bytes);
  return state;
}

/**
 * The state of `bytes` when they differ from `previousBytes` (which `previous` was read from or written
 * as) only in a run of members inside `machines`: the unchanged members keep their entries and only the
 * changed run is parsed. Undefined whenever that cannot be relied on; the caller then parses the whole
 * file, which also reports any corruption.
 */
function parseChanged(
  bytes: Buffer | string,
  path: string,
  previous: RegistryState | undefined,
  previousBytes: Buffer | undefined,
): RegistryState | undefined {
  if (!previous || !previousBytes || !Buffer.isBuffer(bytes)) return undefined;
  // A change spanning most of the file: parsing it alone saves nothing (and the full parse comes in
  // pieces when asynchronous). Known before the layout is needed, which may have to be scanned.
  const bounds = diffBounds(previousBytes, bytes);
  if (bytes.length - bounds.prefix - bounds.suffix > bytes.length / 2) return undefined;
  const layout = layoutOf(previous, previousBytes);
  const window = layout && changedWindow(layout, bytes, bounds);
  if (!layout || !window) return undefined;
  const memberBefore = window.first > 0;
  const memberAfter = window.after < layout.keys.length;
  // The changed run must be: [`,` if a member precedes] members [`,` if a member follows], or, with no
  // member in it, the one `,` between its neighbours (or nothing).
  let run = bytes.toString('utf8', window.start, window.end).replace(/^[ \t\n\r]+|[ \t\n\r]+$/g, '');
  if (run === '' || run === ',') {
    if ((run === ',') !== (memberBefore && memberAfter)) return undefined;
    run = '';
  } else {
    if (memberBefore) {
      if (run[0] !== ',') return undefined;
      run = run.slice(1);
    }
    if (memberAfter) {
      if (!run.endsWith(',')) return undefined;
      run = run.slice(0, -1);
    }
    if (!/[^ \t\n\r]/.test(run)) return undefined;
  }
  const text = `{${run}}`;
  let data: Record<string, unknown>;
  try {
    data = JSON.parse(text) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  const found = scanRun(bytes, window.start, window.end);
  // The byte scan and JSON.parse must agree on the run (they do not when a key repeats in it).
  if (found.keys.length !== Object.keys(data).length) return undefined;

  // The window's entries, reusing the previous entry of a machine whose fields did not change.
  const runEntries: Entry[] = [];
  let spansInText: Map<string, Span> | undefined;
  const spanOf = (key: string) => {
    spansInText ??= spans(text, 0);
    return spansInText.get(key)!;
  };
  for (const key of found.keys) {
    const value = data[key];
    const known = previous.entries.get(key);
    if (known?.valid && known.extra.length === 0 && unchanged(known.machine, key, value)) {
      runEntries.push(known);
      continue;
    }
    try {
      runEntries.push(toEntry(key, value, text, () => spanOf(key), path));
    } catch {
      // Too deep: the full parse reports it with the file's own position (or finds that a later
      // duplicate of this key, outside the run, is the value that counts).
      return undefined;
    }
  }
  const { first, after, delta } = window;
  const keys = layout.keys.slice(0, first).concat(found.keys, layout.keys.slice(after));
  const list = layout.entries.slice(0, first).concat(runEntries, layout.entries.slice(after));
  const starts = layout.starts.slice(0, first).concat(found.starts);
  const ends = layout.ends.slice(0, first).concat(found.ends);
  for (let i = after; i < layout.keys.length; i++) {
    starts.push(layout.starts[i]! + delta);
    ends.push(layout.ends[i]! + delta);
  }
  // In the order JSON.parse gives (and a full parse keeps): keys that are array indices first, ascending,
  // then the others in file order.
  const entries = new Map<string, Entry>();
  const indices: number[] = [];
  for (let i = 0; i < keys.length; i++) if (isIndex(keys[i]!)) indices.push(i);
  indices.sort((a, b) => Number(keys[a]) - Number(keys[b]));
  for (const i of indices) entries.set(keys[i]!, list[i]!);
  for (let i = 0; i < keys.length; i++) if (!entries.has(keys[i]!)) entries.set(keys[i]!, list[i]!);
  // A key of the window that is also outside it: JSON.parse would keep the last of the two.
  if (entries.size !== keys.length) return undefined;
  const next: Layout = {
    bytes,
    version: layout.version,
    extra: layout.extra,
    open: layout.open,
    close: layout.close + delta,
    keys,
    entries: list,
    starts,
    ends,
  };
  if (!entries.has('local')) entries.set('local', LOCAL_ENTRY);
  const state: RegistryState = { version: layout.version, entries, extra: layout.extra };
  setLayout(state, next);
  return state;
}

/**
 * Parses one machine entry kept on its own (the etcd store keeps one per key), as parseRegistry reads
 * an entry of the file: unknown fields keep their raw text, an entry that fails validation is kept whole
 * and reported. Text that is not JSON, or nests too deep, is RegistryCorruptError naming `where`.
 */
export function parseEntry(name: string, text: string, where: string): Entry {
  const data = parseText(text, where);
  const start = text.length - text.trimStart().length;
  return toEntry(name, data, text, () => ({ start, end: skipValue(text, start) }), where);
}

/** A value's place in the text. */
interface Span {
  start: number;
  end: number;
}

/** Parses JSON text; a syntax error is RegistryCorruptError with its line, column and position. */
function parseText(text: string, path: string): unknown {
  try {
    return parseJson(text, path);
  } catch (err) {
    if (!(err instanceof JsonParseError)) throw err;
    const where = `invalid JSON at line ${err.line}, column ${err.column}`;
    throw new RegistryCorruptError(path, `${where} (position ${err.position})`, err.position, err);
  }
}

/** The text of a span. */
const rawOf = (text: string, span: Span) => text.slice(span.start, span.end);

/** Refuses a value nesting deeper than Go allows (the registry adds 3 levels around a machine's fields). */
function tooDeep(value: unknown, span: () => Span, path: string): void {
  if (nestsDeeperThan(value, MAX_DEPTH - 3)) {
    const at = span().start;
    throw new RegistryCorruptError(path, `nesting deeper than ${MAX_DEPTH} levels (position ${at})`, at);
  }
}

/** The Entry for machine `key` whose parsed value is `value` and whose text is at `span()` in `text`. */
function toEntry(key: string, value: unknown, text: string, span: () => Span, path: string): Entry {
  const entry = readEntry(key, value);
  if (entry.valid && entry.extraKeys.length === 0) return { valid: true, machine: entry.machine, extra: [] };
  tooDeep(value, span, path);
  if (!entry.valid) return { valid: false, raw: rawOf(text, span()), problem: entry.problem };
  const fields = spans(text, span().start);
  return {
    valid: true,
    machine: entry.machine,
    extra: entry.extraKeys.map((k) => [k, rawOf(text, fields.get(k)!)] as const),
  };
}

/** The members of the object at `start`, by key (the last one wins, as in JSON.parse). */
function spans(text: string, start: number): Map<string, Span> {
  const out = new Map<string, Span>();
  for (const m of objectMembers(text, start)) out.set(m.key, { start: m.valueStart, end: m.valueEnd });
  return out;
}

/** Whether the file's `value` for `key` is exactly the already validated `machine` (known fields only). */
function unchanged(machine: Readonly<Machine>, key: string, value: unknown): boolean {
  if (!isObject(value)) return false;
  let fields = 0;
  for (const k in value) {
    fields++;
    if (!Object.hasOwn(KNOWN, k)) return false;
  }
  if (fields === 0) return false;
  const field = (v: unknown) => (v === '' || v === null ? undefined : v);
  const name = field(value.name);
  return (
    (name === undefined || name === key) &&
    field(value.type) === machine.type &&
    field(value.host) === machine.host &&
    field(value.key_path) === machine.keyPath &&
    field(value.town_path) === machine.townPath
  );
}

/** The per-machine fields of the Go format, and their names in Machine. */
const KNOWN: Record<string, keyof Machine> = {
  name: 'name',
  type: 'type',
  host: 'host',
  key_path: 'keyPath',
  town_path: 'townPath',
};

/** Reads one entry: the validated machine and the names of its unknown fields, or why it is invalid. */
function readEntry(
  key: string,
  value: unknown,
): { valid: true; machine: Machine; extraKeys: string[] } | { valid: false; problem: InvalidMachineError } {
  if (!isObject(value)) {
    return { valid: false, problem: new InvalidMachineError('machine', 'is not a JSON object', key) };
  }
  const candidate: Record<string, unknown> = { name: key };
  const extraKeys: string[] = [];
  for (const k of Object.keys(value)) {
    const field = Object.hasOwn(KNOWN, k) ? KNOWN[k]! : undefined;
    if (!field) extraKeys.push(k);
    else if (field === 'name') {
      // Go uses the map key; a different "name" inside is a hand edit we cannot resolve.
      if (value[k] !== key && value[k] !== '' && value[k] !== null) {
        return {
          valid: false,
          problem: new InvalidMachineError('name', `differs from its key (${describe(value[k])})`, key),
        };
      }
    } else if (value[k] !== null && value[k] !== '') candidate[field] = value[k];
  }
  try {
    const machine = validateMachine(candidate);
    if (machine.name === 'local' && machine.type !== 'local') {
      throw new InvalidMachineError('type', '"local" must have type local', key);
    }
    return { valid: true, machine: Object.freeze(machine), extraKeys };
  } catch (err) {
    if (!(err instanceof InvalidMachineError)) throw err;
    return { valid: false, problem: new InvalidMachineError(err.field, err.detail, key) };
  }
}

/**
 * Serializes the state in the Go tool's exact layout, as bytes. Each entry's text is cached with the
 * entry (entries are immutable), so a write after adding one machine to 10,000 encodes one machine and
 * concatenates the rest: this runs under the write lock for every write, so it must stay cheap.
 */
export function serializeRegistry(state: RegistryState): Buffer {
  return runAtOnce(serializeSteps(state));
}

/**
 * serializeRegistry, yielding to the event loop after every CHUNK entries it had to encode: the first
 * write after opening a 10,000-machine registry encodes every entry once (later writes reuse them).
 */
export async function serializeRegistryAsync(state: RegistryState): Promise<Buffer> {
  return runInPieces(serializeSteps(state));
}

/** How many entries are encoded between two yields of serializeRegistryAsync (about 5 ms of work). */
const ENCODE_CHUNK = 250;

/** The serialization, as steps: it yields after every CHUNK entries not encoded before. */
function* serializeSteps(state: RegistryState): Generator<void, Buffer> {
  const names = sortBytewise([...state.entries.keys()]);
  const parts: Buffer[] = [];
  const version = Math.max(state.version, REGISTRY_VERSION);
  const head = Buffer.from(`{\n  "version": ${version},\n  "machines": ${names.length === 0 ? '{}' : '{\n'}`);
  parts.push(head);
  // Where each entry lands, for the next re-read's changed-members parse (see _layout.ts).
  const entries: Entry[] = [];
  const starts: number[] = [];
  const ends: number[] = [];
  let at = head.length;
  let encoded = 0;
  for (let i = 0; i < names.length; i++) {
    if (i > 0) {
      parts.push(SEPARATOR);
      at += SEPARATOR.length;
    }
    const entry = state.entries.get(names[i]!)!;
    if (!entryCache.has(entry) && ++encoded % ENCODE_CHUNK === 0) yield;
    const bytes = entryBytes(names[i]!, entry);
    parts.push(bytes);
    entries.push(entry);
    starts.push(at + ENTRY_INDENT);
    at += bytes.length;
    ends.push(at);
  }
  let tail = names.length === 0 ? '' : '\n  }';
  for (const [k, raw] of state.extra) tail += `,\n  ${quote(k)}: ${raw}`;
  parts.push(Buffer.from(`${tail}\n}`));
  const bytes = Buffer.concat(parts);
  const open = head.length - 2;
  const close = names.length === 0 ? open + 1 : at + 3;
  setLayout(state, { bytes, version, extra: state.extra, open, close, keys: names, entries, starts, ends });
  return bytes;
}

/** Spaces before each entry's key in the file. */
const ENTRY_INDENT = 4;

const SEPARATOR = Buffer.from(',\n');
const entryCache = new WeakMap<Entry, Buffer>();

/** `    "name": {...}` for one entry, encoded once per entry. */
function entryBytes(name: string, entry: Entry): Buffer {
  let bytes = entryCache.get(entry);
  if (!bytes) {
    bytes = Buffer.from(`    ${quote(name)}: ${entryText(entry)}`);
    entryCache.set(entry, bytes);
  }
  return bytes;
}

/** One machine entry's JSON text at the depth the registry file puts it (the etcd store uses it whole). */
export function entryText(entry: Entry): string {
  if (!entry.valid) return entry.raw;
  const { machine, extra } = entry;
  let text = '{\n';
  text += `      "name": ${quote(machine.name)},\n`;
  text += `      "type": ${quote(machine.type)},\n`;
  text += `      "host": ${quote(machine.host ?? '')},\n`;
  text += `      "key_path": ${quote(machine.keyPath ?? '')},\n`;
  text += `      "town_path": ${quote(machine.townPath ?? '')}`;
  for (const [k, raw] of extra) text += `,\n      ${quote(k)}: ${raw}`;
  return `${text}\n    }`;
}

/** A JSON string literal escaped as Go's encoder does (`<`, `>`, `&`, U+2028, U+2029 as \u00XX). */
function quote(s: string): string {
  if (/^[\w .@:/~+,=-]*$/.test(s)) return `"${s}"`;
  return JSON.stringify(s).replace(
    /[<>&\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/** Sorts by UTF-8 bytes, as Go sorts map keys; plain comparison agrees below U+D800, the common case. */
function sortBytewise(names: string[]): string[] {
  if (names.every((n) => !/[\ud800-\uffff]/.test(n)))
    return names.sort((x, y) => (x < y ? -1 : x > y ? 1 : 0));
  const bytes = new Map(names.map((n) => [n, Buffer.from(n)]));
  return names.sort((x, y) => Buffer.compare(bytes.get(x)!, bytes.get(y)!));
}

/** Whether `v` is a plain JSON object. */
function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
