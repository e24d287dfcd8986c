/**
 * Where each machine entry sits in the registry file's bytes, so that a re-read after another process
 * changed a few machines parses only the bytes that changed (see parseRegistry in _format.ts).
 *
 * A layout describes one exact byte string: the offsets of the `machines` object's braces and of each
 * member (from its key's opening quote to the end of its value), with the Entry each member is. It comes
 * from our own serializer (offsets known as the text is built) or, for bytes someone else wrote, from a
 * scan made the first time a re-read needs it. The new file is compared with the old bytes from both ends
 * (memcmp in blocks); the members wholly inside the common prefix or suffix are unchanged. Whatever lies
 * between is the only text parsed, and only if it is a well-formed run of members in the same place:
 * anything else (a change outside `machines`, a duplicate key) makes the caller parse the whole file, so
 * the result is always what a full parse would give (keys that are array indices come first, as
 * JSON.parse orders them).
 */
import type { Entry, RawField, RegistryState } from './_format.js';
import { runAtOnce, runInPieces } from './_steps.js';

/** The members of the machines object in one exact byte string. */
export interface Layout {
  readonly bytes: Buffer;
  /** What the top level (outside `machines`) of these bytes says. */
  readonly version: number;
  readonly extra: readonly RawField[];
  /** Offsets of the `{` and `}` of the machines object. */
  readonly open: number;
  readonly close: number;
  /** Members in file order: key, entry, offset of the key's quote, offset just past the value. */
  readonly keys: readonly string[];
  readonly entries: readonly Entry[];
  readonly starts: readonly number[];
  readonly ends: readonly number[];
}

/** A layout to be worked out from a parsed state's bytes the first time it is needed (or null: unusable). */
interface Pending {
  readonly bytes: Buffer;
  readonly state: RegistryState;
}

const layouts = new WeakMap<RegistryState, Layout | Pending | null>();

/** Records that `state` was serialized as `layout.bytes`. */
export function setLayout(state: RegistryState, layout: Layout): void {
  layouts.set(state, layout);
}

/** Records that `state` was parsed from `bytes`; its layout is scanned only if a later re-read needs it. */
export function setParsed(state: RegistryState, bytes: Buffer): void {
  layouts.set(state, { bytes, state });
}

/**
 * Scans the layout of `bytes` (parsed as `state`) now, yielding to the event loop between pieces: open()
 * and reload() do this, so the first re-read after them does not pay for the scan.
 */
export async function scanParsed(state: RegistryState, bytes: Buffer): Promise<void> {
  layouts.set(state, await runInPieces(layoutSteps(bytes, state)));
}

/** Scans, in pieces, the layout of `state` if it is still to be scanned from `bytes` (for parseRegistryAsync). */
export async function scanPending(state: RegistryState, bytes: Buffer): Promise<void> {
  const known = layouts.get(state);
  if (known && !('open' in known) && (known.bytes === bytes || known.bytes.equals(bytes)))
    await scanParsed(state, known.bytes);
}

/** The layout of `bytes` if `state` is known to be exactly those bytes, else undefined. */
export function layoutOf(state: RegistryState, bytes: Buffer): Layout | undefined {
  let known = layouts.get(state);
  if (!known) return undefined;
  if (known.bytes !== bytes && !known.bytes.equals(bytes)) return undefined;
  if (!('open' in known)) {
    known = runAtOnce(layoutSteps(known.bytes, known.state));
    layouts.set(state, known);
    if (!known) return undefined;
  }
  return known;
}

/** The part of the machines object that differs between a layout's bytes and `next`. */
export interface Window {
  /** Members [0, first) and [after, keys.length) of the old layout are unchanged. */
  readonly first: number;
  readonly after: number;
  /** The changed run in `next`: [start, end), which holds the separators around the new members. */
  readonly start: number;
  readonly end: number;
  /** next.length - old length: how far the unchanged members after the window moved. */
  readonly delta: number;
}

/**
 * The changed run of members between the layout's bytes and `next`, or undefined when the change reaches
 * outside the machines object (the top level changed: parse everything).
 */
export function changedWindow(layout: Layout, next: Buffer, bounds: Bounds): Window | undefined {
  const old = layout.bytes;
  const { prefix, suffix } = bounds;
  const oldEnd = old.length - suffix; // old[prefix, oldEnd) is what changed
  // The machines object's `{` must be in the common prefix and its `}` in the common suffix.
  if (prefix <= layout.open || oldEnd > layout.close) return undefined;
  const { starts, ends } = layout;
  // Unchanged before: members whose value ends before the first changed byte (the byte after a value
  // decides where a number ends, so it must be unchanged too).
  let first = 0;
  while (first < ends.length && ends[first]! < prefix) first++;
  let after = first;
  while (after < starts.length && starts[after]! < oldEnd) after++;
  const start = first === 0 ? layout.open + 1 : ends[first - 1]!;
  const oldStop = after === starts.length ? layout.close : starts[after]!;
  const delta = next.length - old.length;
  return { first, after, start, end: oldStop + delta, delta };
}

/** How many bytes two versions share at the start and at the end (the end never overlapping the start). */
export interface Bounds {
  readonly prefix: number;
  readonly suffix: number;
}

/** The common prefix and suffix of `old` and `next`. */
export function diffBounds(old: Buffer, next: Buffer): Bounds {
  const prefix = commonPrefix(old, next);
  return { prefix, suffix: commonSuffix(old, next, Math.min(old.length, next.length) - prefix) };
}

/** Length of the common prefix of two buffers: memcmp in blocks, then bytes. */
function commonPrefix(a: Buffer, b: Buffer): number {
  const max = Math.min(a.length, b.length);
  let i = 0;
  for (let block = 4096; i < max; ) {
    const n = Math.min(block, max - i);
    if (a.compare(b, i, i + n, i, i + n) !== 0) break;
    i += n;
  }
  while (i < max && a[i] === b[i]) i++;
  return i;
}

/** Length of the common suffix of two buffers, at most `limit`. */
function commonSuffix(a: Buffer, b: Buffer, limit: number): number {
  let n = 0;
  for (const block = 4096; n < limit; ) {
    const k = Math.min(block, limit - n);
    if (a.compare(b, b.length - n - k, b.length - n, a.length - n - k, a.length - n) !== 0) break;
    n += k;
  }
  while (n < limit && a[a.length - 1 - n] === b[b.length - 1 - n]) n++;
  return n;
}

/** How many members are scanned between two yields of scanParsed. */
const CHUNK = 2_000;

/**
 * The layout of bytes JSON.parse accepted as `state`, in one pass, or null when a re-read could not rely
 * on it: the top level or the machines object repeats a key (JSON.parse keeps the last), or the members
 * do not match the state's entries.
 */
function* layoutSteps(b: Buffer, state: RegistryState): Generator<void, Layout | null> {
  const seenTop = new Set<string>();
  let found: Omit<Layout, 'bytes' | 'version' | 'extra'> | undefined;
  let i = skipSpace(b, skipSpace(b, 0) + 1); // past the top level's '{'
  while (b[i] !== 0x7d) {
    const keyEnd = skipString(b, i);
    const key = decodeKey(b, i, keyEnd);
    if (seenTop.has(key)) return null;
    seenTop.add(key);
    const value = skipSpace(b, skipSpace(b, keyEnd) + 1); // past ':'
    let end: number;
    if (key === 'machines') {
      if (b[value] !== 0x7b) return null;
      const keys: string[] = [];
      const entries: Entry[] = [];
      const starts: number[] = [];
      const ends: number[] = [];
      const seen = new Set<string>();
      let j = skipSpace(b, value + 1);
      while (b[j] !== 0x7d) {
        const memberKeyEnd = skipString(b, j);
        const name = decodeKey(b, j, memberKeyEnd);
        const entry = state.entries.get(name);
        if (!entry || seen.has(name)) return null;
        seen.add(name);
        const memberEnd = skipValue(b, skipSpace(b, skipSpace(b, memberKeyEnd) + 1));
        keys.push(name);
        entries.push(entry);
        starts.push(j);
        ends.push(memberEnd);
        j = skipSpace(b, memberEnd);
        if (b[j] === 0x2c) j = skipSpace(b, j + 1);
        if (keys.length % CHUNK === 0) yield;
      }
      found = { open: value, close: j, keys, entries, starts, ends };
      end = j + 1;
    } else end = skipValue(b, value);
    i = skipSpace(b, end);
    if (b[i] === 0x2c) i = skipSpace(b, i + 1);
  }
  return found ? { bytes: b, version: state.version, extra: state.extra, ...found } : null;
}

/** Whether JavaScript orders `key` as an array index (before all other keys of an object). */
export function isIndex(key: string): boolean {
  const c = key.charCodeAt(0);
  return c >= 0x30 && c <= 0x39 && /^(?:0|[1-9]\d{0,9})$/.test(key) && Number(key) < 4294967295;
}

/**
 * The members in [start, end) of valid JSON bytes: a run of members inside an object, with the separators
 * around it (a leading `,` is skipped). A repeated key is listed twice (the caller compares the count with
 * JSON.parse's).
 */
export function scanRun(
  b: Uint8Array,
  start: number,
  end: number,
): { keys: string[]; starts: number[]; ends: number[] } {
  const keys: string[] = [];
  const starts: number[] = [];
  const ends: number[] = [];
  let i = skipSpace(b, start);
  if (b[i] === 0x2c) i = skipSpace(b, i + 1);
  while (i < end && b[i] === 0x22) {
    const keyEnd = skipString(b, i);
    const valueEnd = skipValue(b, skipSpace(b, skipSpace(b, keyEnd) + 1));
    keys.push(decodeKey(b, i, keyEnd));
    starts.push(i);
    ends.push(valueEnd);
    i = skipSpace(b, valueEnd);
    if (b[i] === 0x2c) i = skipSpace(b, i + 1);
  }
  return { keys, starts, ends };
}

/** A JSON string's value from its bytes [start, end) (quotes included). */
function decodeKey(b: Uint8Array, start: number, end: number): string {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  for (let i = start + 1; i < end - 1; i++) {
    if (b[i] === 0x5c) return JSON.parse(buf.toString('utf8', start, end)) as string;
  }
  return buf.toString('utf8', start + 1, end - 1);
}

/** Offset just past the value starting at `i` (valid JSON bytes). */
function skipValue(b: Uint8Array, i: number): number {
  let depth = 0;
  for (;;) {
    const c = b[i]!;
    if (c === 0x22) i = skipString(b, i);
    else if (c === 0x7b || c === 0x5b) {
      depth++;
      i++;
    } else if (c === 0x7d || c === 0x5d) {
      depth--;
      i++;
    } else if (depth > 0) i++;
    else {
      // A scalar at depth 0: number, true, false, null.
      while (i < b.length && !isDelimiter(b[i]!)) i++;
      return i;
    }
    if (depth === 0) return i;
  }
}

/** Whether a byte ends a scalar: whitespace, `,`, `]` or `}`. */
function isDelimiter(c: number): boolean {
  return c === 0x2c || c === 0x7d || c === 0x5d || c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

/** Offset just past the string whose opening quote is at `i`. */
function skipString(b: Uint8Array, i: number): number {
  for (i++; ; i++) {
    const c = b[i];
    if (c === 0x5c) i++;
    else if (c === 0x22) return i + 1;
  }
}

/** Offset of the first byte at or after `i` that is not JSON whitespace. */
export function skipSpace(b: Uint8Array, i: number): number {
  for (;;) {
    const c = b[i];
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) return i;
    i++;
  }
}
