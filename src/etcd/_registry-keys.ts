/**
 * Where one registry lives in etcd, under `<prefix>registry/<encodeURIComponent(name)>/`:
 * - `machines/<encodeURIComponent(machine)>`: one key per machine, its entry as the registry file
 *   writes it (the Go tool's field names, unknown fields and invalid entries kept byte for byte);
 * - `meta`: the file's top level without the machines (`version`, unknown fields); absent means
 *   `{"version": 1}`, and this version never writes it;
 * - `epoch`: rewritten by every batch that deletes machines, so that "nothing in the registry changed
 *   since revision R" is one compare on the whole prefix (a deleted key has no revision to compare);
 * - `writers/<lease hex>-<n>`: each writer's last batch id, attached to its session lease, so a writer
 *   can tell its own committed batch from someone else's change (see _registry-document.ts).
 */
import { prefixEnd } from './_client.js';

/** What a key under a registry's root is. */
export type KeyKind =
  | { kind: 'machine'; name: string }
  | { kind: 'meta' }
  | { kind: 'epoch' }
  | { kind: 'other' };

/** The key layout of one registry. */
export class RegistryKeys {
  /** Every key of the registry starts with it. */
  readonly root: string;
  /** The end of the root's key range. */
  readonly rootEnd: string;
  readonly meta: string;
  readonly epoch: string;
  readonly #machines: string;
  readonly #writers: string;

  constructor(prefix: string, name: string) {
    this.root = `${prefix}registry/${encodeURIComponent(name)}/`;
    this.rootEnd = prefixEnd(this.root);
    this.meta = `${this.root}meta`;
    this.epoch = `${this.root}epoch`;
    this.#machines = `${this.root}machines/`;
    this.#writers = `${this.root}writers/`;
  }

  /** The key of machine `name`. */
  machine(name: string): string {
    return this.#machines + encodeURIComponent(name);
  }

  /** The batch-id key of one writer (its session lease and its number in the process). */
  writer(leaseHex: string, n: number): string {
    return `${this.#writers}${leaseHex}-${n}`;
  }

  /** What `key` is. */
  classify(key: string): KeyKind {
    if (key.startsWith(this.#machines))
      return { kind: 'machine', name: decode(key.slice(this.#machines.length)) };
    if (key === this.meta) return { kind: 'meta' };
    if (key === this.epoch) return { kind: 'epoch' };
    return { kind: 'other' };
  }
}

/** A machine name from its key segment; a segment written by hand that does not decode stays as it is. */
function decode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}
