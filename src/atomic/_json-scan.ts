/**
 * Small JSON scanners, all iterative (no recursion, so no stack overflow on deep input):
 * - where each member of an object sits in the text, so fields a reader does not understand can be kept
 *   byte for byte (JSON.parse would turn 9007199254740993 into ...992);
 * - how deep a parsed value nests, so that limits are enforced before anything recursive (JSON.stringify,
 *   structuredClone) meets it.
 * The member scanner assumes text JSON.parse has accepted.
 */

/** One member of an object: its key and where its value's text starts and ends. */
export interface Member {
  key: string;
  /** Offset of the key's opening quote. */
  keyStart: number;
  valueStart: number;
  valueEnd: number;
}

/** The members of the object whose `{` is at or after `start`, in file order (valid JSON only). */
export function objectMembers(text: string, start: number): Member[] {
  let i = skipSpace(text, start);
  if (text[i] !== '{') throw new Error(`no object at ${start}`);
  i = skipSpace(text, i + 1);
  const members: Member[] = [];
  if (text[i] === '}') return members;
  for (;;) {
    const keyStart = i;
    const keyEnd = skipString(text, i);
    const key = JSON.parse(text.slice(keyStart, keyEnd)) as string;
    i = skipSpace(text, keyEnd) + 1; // past ':'
    const valueStart = skipSpace(text, i);
    const valueEnd = skipValue(text, valueStart);
    members.push({ key, keyStart, valueStart, valueEnd });
    i = skipSpace(text, valueEnd);
    if (text[i] === ',') i = skipSpace(text, i + 1);
    else return members; // '}'
  }
}

/** Offset just past the value that starts at `i` (valid JSON only). */
export function skipValue(text: string, i: number): number {
  let depth = 0;
  for (;;) {
    const c = text.charCodeAt(i);
    if (c === 0x22) i = skipString(text, i);
    else if (c === 0x7b || c === 0x5b) {
      depth++;
      i++;
    } else if (c === 0x7d || c === 0x5d) {
      depth--;
      i++;
    } else if (depth > 0 || c === 0x2c || c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) {
      if (depth === 0) return i; // a scalar ended
      i++;
    } else {
      // A scalar at depth 0: number, true, false, null.
      while (i < text.length && !/[\s,\]}]/.test(text[i]!)) i++;
      return i;
    }
    if (depth === 0) return i;
  }
}

/** Offset just past the string whose opening quote is at `i`. */
function skipString(text: string, i: number): number {
  for (i++; ; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x5c) i++;
    else if (c === 0x22) return i + 1;
  }
}

/** Offset of the first non-whitespace character at or after `i`. */
function skipSpace(text: string, i: number): number {
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) break;
    i++;
  }
  return i;
}

/** Whether a parsed JSON value nests deeper than `limit` arrays/objects. Iterative. */
export function nestsDeeperThan(value: unknown, limit: number): boolean {
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    if (depth + 1 > limit) return true;
    for (const child of Array.isArray(v) ? v : Object.values(v)) {
      if (child !== null && typeof child === 'object') stack.push([child, depth + 1]);
    }
  }
  return false;
}

/**
 * Why `value` cannot be stored as JSON exactly as it is, or undefined: it is cyclic, it nests deeper than
 * `limit`, or it holds a number JSON has no text for (NaN, ±Infinity; JSON.stringify would write null),
 * named with where it is (`items[3].v`). One iterative walk; the paths are worked out only on failure.
 */
export function jsonProblem(value: unknown, limit: number): string | undefined {
  if (typeof value === 'number' && !Number.isFinite(value)) return `the value is ${value}`;
  const stack: [unknown, number][] = [[value, 0]];
  let found: 'deep' | 'number' | undefined;
  while (stack.length > 0 && !found) {
    const [v, depth] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    if (depth + 1 > limit) found = 'deep';
    else
      for (const child of Array.isArray(v) ? v : Object.values(v)) {
        if (child !== null && typeof child === 'object') stack.push([child, depth + 1]);
        else if (typeof child === 'number' && !Number.isFinite(child)) found = 'number';
      }
  }
  return found && describeProblem(value, limit, found);
}

/** The message for what jsonProblem found, with where (a second walk that keeps each node's path). */
function describeProblem(value: unknown, limit: number, found: 'deep' | 'number'): string {
  interface Frame {
    v: unknown;
    depth: number;
    parent: Frame | undefined;
    key: string | number | undefined;
  }
  const where = (f: Frame | undefined): string => {
    const parts: string[] = [];
    for (; f?.parent; f = f.parent)
      parts.unshift(
        typeof f.key === 'number'
          ? `[${f.key}]`
          : /^[A-Za-z_$][\w$]*$/.test(f.key!)
            ? `.${f.key}`
            : `[${JSON.stringify(f.key)}]`,
      );
    const path = parts.join('').replace(/^\./, '');
    return path === '' ? 'the top level' : path;
  };
  const stack: Frame[] = [{ v: value, depth: 0, parent: undefined, key: undefined }];
  while (stack.length > 0) {
    const frame = stack.pop()!;
    const { v, depth } = frame;
    if (v === null || typeof v !== 'object') continue;
    if (depth + 1 > limit) {
      // A cycle repeats an object along the path: name where it closes and what it leads back to.
      const chain: Frame[] = [];
      for (let f: Frame | undefined = frame; f; f = f.parent) chain.unshift(f);
      const first = new Map<unknown, Frame>();
      for (const f of chain) {
        const earlier = first.get(f.v);
        if (earlier) return `the value is cyclic: ${where(f)} is ${where(earlier)} again`;
        first.set(f.v, f);
      }
      if (found === 'deep') return `the value nests deeper than ${limit} levels (at ${where(frame)})`;
      continue;
    }
    const entries: [string | number, unknown][] = Array.isArray(v)
      ? v.map((c, i) => [i, c])
      : Object.entries(v);
    for (const [key, child] of entries) {
      const childFrame = { v: child, depth: depth + 1, parent: frame, key };
      if (child !== null && typeof child === 'object') stack.push(childFrame);
      else if (found === 'number' && typeof child === 'number' && !Number.isFinite(child))
        return `the value holds ${child} at ${where(childFrame)}, which JSON cannot hold (it would be written as null): a number beyond ±1.8e308 read from the file, or NaN or Infinity put there; replace it`;
    }
  }
  return found === 'deep'
    ? `the value nests deeper than ${limit} levels`
    : 'the value holds a number JSON cannot hold';
}
