/**
 * Turns one applied batch of registry writes into one etcd transaction: what it writes, and the compares
 * that make it serializable.
 *
 * - A batch of adds and removes (none read the whole registry) compares only what it touches: each
 *   machine key it wrote (its mod revision must still be the one the batch read; 0 for a key that did
 *   not exist) and the meta key. Adds and removes of different machines therefore never conflict.
 * - A batch with an update() (or with a write that failed: its failure may depend on anything it read)
 *   compares the whole registry: no key under the root may be newer than the snapshot's revision. A
 *   deletion leaves no revision behind, so every batch that deletes rewrites the epoch key, which is
 *   under the root too.
 * - Every compare fails once the transaction has been applied (a revision only grows; the epoch defeats
 *   the deletion that could make a range compare hold again), so sending the transaction a second time
 *   can never apply it twice: that is what makes the client's resend after an unknown outcome safe.
 *
 * Size: etcd refuses a transaction whose compare, success or failure list is longer than its
 * --max-txn-ops. {@link batchOps} counts a batch as it grows, write by write, the way the transaction
 * EtcdDocument would send for it counts ({@link planOps}), so the group commit can cut the batch before
 * it gets too large.
 */
import type { EntryChange } from '../registry/_draft.js';
import { type Entry, entryText, type RegistryState } from '../registry/_format.js';
import type { Compare, Op } from './_client.js';
import type { RegistryKeys } from './_registry-keys.js';
import { modOf, type RegistrySnapshot } from './_registry-memory.js';

/** One batch as a transaction. */
export interface BatchPlan {
  compare: Compare[];
  /** The writes (machine puts and deletes, the epoch); empty for a batch that only needs checking. */
  ops: Op[];
  /** The key of each machine the batch changes, with its new entry (undefined: removed). */
  changes: Map<string, Entry | undefined>;
  /** Whether the compare covers the whole registry. */
  whole: boolean;
}

/**
 * The transaction for a batch that turned `base` into `next`; undefined when there is nothing to write
 * and nothing to check. `whole`: compare the whole registry (see the module comment).
 */
export function planBatch(
  keys: RegistryKeys,
  base: RegistrySnapshot,
  next: RegistryState,
  whole: boolean,
): BatchPlan | undefined {
  const compare: Compare[] = [];
  const ops: Op[] = [];
  const changes = new Map<string, Entry | undefined>();
  const before = base.state.entries;
  const after = next.entries;
  let deletes = false;
  const visit = (name: string) => {
    const was = before.get(name);
    const now = after.get(name);
    if (was === now) return; // untouched (the draft keeps the entries it did not write)
    const key = base.keyOf(name);
    // Rewriting a machine with the same text writes nothing, but still checks that it is current.
    if (!whole) compare.push({ key, target: 'mod', op: '=', value: modOf(was) });
    if (sameText(was, now)) return;
    changes.set(key, now);
    if (now) ops.push({ type: 'put', key, value: entryText(now) });
    else {
      ops.push({ type: 'delete', key });
      deletes = true;
    }
  };
  for (const name of after.keys()) visit(name);
  for (const name of before.keys()) if (!after.has(name)) visit(name);
  if (whole) {
    compare.push({
      key: keys.root,
      rangeEnd: keys.rootEnd,
      target: 'mod',
      op: '<',
      value: base.revision + 1n,
    });
  } else {
    if (compare.length === 0) return undefined;
    compare.push({ key: keys.meta, target: 'mod', op: '=', value: base.metaMod });
  }
  if (deletes) ops.push({ type: 'put', key: keys.epoch, value: '' });
  return { compare, ops, changes, whole };
}

/**
 * The operations etcd counts in the transaction EtcdDocument sends for `plan` (the longest of its lists):
 * the compares; the writes with the batch-id put (success); the writer key and changed-keys reads
 * (failure), or only the changed-keys read when there is nothing to write.
 */
export function planOps(plan: BatchPlan): number {
  return txnSize(plan.compare.length, plan.ops.length);
}

/**
 * What {@link planOps} gives for the plan of a batch that made `changes` (every machine whose entry is no
 * longer the base's), without building it: 0 when no transaction would be sent. `whole` as planBatch's.
 */
export function batchOps(changes: Iterable<Pick<EntryChange, 'was' | 'now'>>, whole: boolean): number {
  let touched = 0;
  let writes = 0;
  let deletes = false;
  for (const { was, now } of changes) {
    touched++;
    if (sameText(was, now)) continue;
    writes++;
    if (!now) deletes = true;
  }
  if (!whole && touched === 0) return 0;
  return txnSize(whole ? 1 : touched + 1, writes + (deletes ? 1 : 0));
}

/** See planOps: `compares` and `writes` as in the plan. */
function txnSize(compares: number, writes: number): number {
  return writes === 0 ? Math.max(compares, 1) : Math.max(compares, writes + 1, 2);
}

/** The text of each entry already serialized: a batch is measured after every write. */
const texts = new WeakMap<Entry, string>();

function textOf(entry: Entry): string {
  let text = texts.get(entry);
  if (text === undefined) {
    text = entryText(entry);
    texts.set(entry, text);
  }
  return text;
}

/** Whether a machine rewritten from `was` to `now` keeps the same text (nothing to write). */
function sameText(was: Entry | undefined, now: Entry | undefined): boolean {
  return was !== undefined && now !== undefined && textOf(was) === textOf(now);
}
