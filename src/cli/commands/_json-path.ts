/** PATH arguments of `townlock json`: dot paths (a.b.0) and JSON Pointers (/a/b/0), read and written. */
import { UsageError } from '../errors.js';

/** The keys of PATH; [] for the whole document. */
export function pathKeys(path: string): string[] {
  if (path === '' || path === '.') return [];
  if (path.startsWith('/'))
    return path
      .slice(1)
      .split('/')
      .map((k) => k.replace(/~1/g, '/').replace(/~0/g, '~'));
  const keys = path.split('.');
  if (keys.some((k) => k === '')) {
    throw new UsageError(
      `PATH ${JSON.stringify(path)} has an empty key`,
      'write a.b.c, or a JSON Pointer (/a/b/c)',
    );
  }
  return keys;
}

/** The value at `keys` in `doc`, or undefined when there is none. */
export function getAt(doc: unknown, keys: string[]): { value: unknown } | undefined {
  let v = doc;
  for (const k of keys) {
    if (Array.isArray(v) && /^\d+$/.test(k) && Number(k) < v.length) v = v[Number(k)];
    else if (v !== null && typeof v === 'object' && !Array.isArray(v) && Object.hasOwn(v, k)) {
      v = (v as Record<string, unknown>)[k];
    } else return undefined;
  }
  return { value: v };
}

/**
 * Sets `value` at `keys` in `doc` (mutated), creating missing objects on the way; returns the new root
 * (for an empty path, `value` itself). Throws UsageError when the path runs into a non-container. Keys
 * are own properties only: `__proto__` or `constructor` is a key like any other, never the prototype.
 */
export function setAt(doc: unknown, keys: string[], value: unknown): unknown {
  if (keys.length === 0) return value;
  let v = doc as Record<string, unknown> | unknown[];
  keys.forEach((k, i) => {
    const last = i === keys.length - 1;
    const into = keys.slice(0, i).join('.') || 'the document';
    if (Array.isArray(v)) {
      if (!/^\d+$/.test(k) || Number(k) > v.length) {
        throw new UsageError(
          `${into} is an array of ${v.length}: '${k}' is not an index of it`,
          'use 0..length (length appends)',
        );
      }
      const at = Number(k);
      if (last) v[at] = value;
      else {
        if (v[at] === undefined || v[at] === null) v[at] = {};
        v = v[at] as Record<string, unknown>;
      }
    } else if (v !== null && typeof v === 'object') {
      const own = Object.hasOwn(v, k) ? v[k] : undefined;
      if (last) put(v, k, value);
      else {
        if (own === undefined || own === null) put(v, k, {});
        else if (typeof own !== 'object')
          throw new UsageError(`${[...keys.slice(0, i + 1)].join('.')} is not an object or array`);
        v = v[k] as Record<string, unknown>;
      }
    } else throw new UsageError(`${into} is not an object or array`);
  });
  return doc;
}

/** Sets an own, enumerable property (a plain assignment to `__proto__` would set the prototype instead). */
function put(object: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(object, key, { value, enumerable: true, writable: true, configurable: true });
}
