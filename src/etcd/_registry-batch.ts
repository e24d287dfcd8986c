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
 */
import { type Entry, entryText, type RegistryState } from '../registry/_format.js';
import type { Compare, Op } from './_client.js';
import type { RegistryKeys } from './_registry-keys.js';
import { modOf, type RegistrySnapshot } from './_registry-memory.js';

/** One batch as a transaction. */
export interface BatchPlan {
  compare: Compare[];
  /** The writes (machine puts and deletes, the epoch); empty for a batch that only needs checking. */
  ops: Op[];
  /** Each machine the batch changes, with its new entry (undefined: removed). */
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
    if (was && now && entryText(was) === entryText(now)) return;
    changes.set(name, now);
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
