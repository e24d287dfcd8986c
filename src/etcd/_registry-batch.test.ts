/**
 * The size of a batch's transaction without etcd: batchOps, which the group commit asks after every
 * write, gives exactly what the plan of the batch counts (planOps), for adds, removes, rewrites with the
 * same text, writes undone by a later write or a rollback, with and without a whole-registry compare.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { beginDraft } from '../registry/_draft.js';
import type { KeyValue } from './_client.js';
import { batchOps, planBatch, planOps } from './_registry-batch.js';
import { RegistryKeys } from './_registry-keys.js';
import { RegistryMemory } from './_registry-memory.js';

const keys = new RegistryKeys('t/', 'machines');
const ssh = (name: string, host = `${name}.example`) => ({ name, type: 'ssh' as const, host });
const kv = (name: string, mod: number): KeyValue => ({
  key: keys.machine(name),
  value: JSON.stringify({ name, type: 'ssh', host: `${name}.example` }),
  createRevision: 1n,
  modRevision: BigInt(mod),
  version: 1n,
  lease: 0n,
});

/** A snapshot with machines b0..b9 stored. */
function base() {
  const memory = new RegistryMemory(keys, 'test');
  memory.loadAll(
    Array.from({ length: 10 }, (_, i) => kv(`b${i}`, i + 1)),
    20n,
  );
  return memory.snapshot();
}

/** Runs `edits` on a draft and checks batchOps against the plan, both ways of comparing. */
function check(edits: (d: ReturnType<typeof beginDraft>) => void, expected: { part: number; whole: number }) {
  const snapshot = base();
  const draft = beginDraft(snapshot.state, 'test');
  edits(draft);
  for (const whole of [false, true]) {
    const measured = batchOps(draft.changes(), whole);
    const { next } = draft.finish();
    const plan = planBatch(keys, snapshot, next, whole);
    assert.equal(measured, plan ? planOps(plan) : 0, `whole: ${whole}`);
    assert.equal(measured, whole ? expected.whole : expected.part, `whole: ${whole}`);
  }
}

test('adds: one compare per machine and the meta, or one put each and the batch id', () => {
  check((d) => d.view.add(ssh('n1')), { part: 2, whole: 2 });
  check(
    (d) => {
      for (let i = 0; i < 5; i++) d.view.add(ssh(`n${i}`));
    },
    { part: 6, whole: 6 },
  );
});

test('removes also rewrite the epoch', () => {
  check(
    (d) => {
      for (let i = 0; i < 4; i++) d.view.remove(`b${i}`);
    },
    { part: 6, whole: 6 }, // 4 deletes + epoch + batch id; 4 compares + meta
  );
  check((d) => d.view.remove('b0'), { part: 3, whole: 3 });
});

test('a rewrite with the same text is compared but not written; an update that writes nothing is one compare', () => {
  check(
    (d) => {
      for (let i = 0; i < 6; i++) d.view.add(ssh(`b${i}`)); // same as stored
      d.view.add(ssh('b7', 'elsewhere'));
    },
    { part: 8, whole: 2 },
  );
  check((d) => d.view.add(ssh('b0')), { part: 2, whole: 1 });
});

test('writes undone by a later write or by a rollback do not count', () => {
  check(
    (d) => {
      d.view.add(ssh('gone'));
      d.view.remove('gone'); // added and removed: nothing
      d.mark();
      for (let i = 0; i < 8; i++) d.view.add(ssh(`r${i}`));
      d.rollback();
      d.mark();
      d.view.add(ssh('kept'));
    },
    { part: 2, whole: 2 },
  );
  check(
    (d) => {
      d.view.remove('b1');
      d.view.add(ssh('b1')); // back to the stored text
    },
    { part: 2, whole: 1 },
  );
});
