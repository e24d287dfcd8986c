/**
 * GroupCommit on a fake store: how a batch is bounded. A store with a `tooLarge` limit gets its queued
 * writes in several commits, each write atomic and in arrival order, each caller with its own result; a
 * write too large even alone fails alone with the store's error; a store without a limit (the files)
 * keeps committing everything queued as one batch.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Draft, GroupCommit } from './_group-commit.js';

/** The view writes edit: a list they append to. */
interface ListView {
  add(...items: string[]): void;
}

/** A draft over a list, which also says how many items the batch added so far (what the limit measures). */
interface ListDraft extends Draft<readonly string[], ListView> {
  added(): number;
}

function begin(base: readonly string[]): ListDraft {
  const items = [...base];
  let markAt = items.length;
  return {
    view: { add: (...more) => void items.push(...more) },
    mark: () => {
      markAt = items.length;
    },
    rollback: () => {
      items.length = markAt;
    },
    finish: () => ({ next: items, changed: items.length > base.length }),
    added: () => items.length - base.length,
  };
}

class TooLarge extends Error {}

/** A store that commits with one apply per batch and records what each commit added. */
function fakeStore(limit: number | undefined) {
  let state: readonly string[] = [];
  const commits: string[][] = [];
  const control = { fail: undefined as Error | undefined };
  const writes = new GroupCommit<readonly string[], ListView, ListDraft>({
    identity: () => 'fake',
    begin,
    reentrant: () => new Error('reentrant'),
    commit: async (apply) => {
      const { next, changed } = await apply(state);
      if (control.fail) throw control.fail;
      commits.push(next.slice(state.length));
      if (changed) state = next;
    },
    tooLarge:
      limit === undefined
        ? undefined
        : (draft) => (draft.added() > limit ? new TooLarge(`${draft.added()} > ${limit}`) : undefined),
  });
  const add = (...items: string[]) =>
    writes.submit((view) => {
      view.add(...items);
      return items.join('+');
    }, false);
  return { writes, add, commits, control, state: () => state };
}

test('many small writes under a limit are split into several commits, in arrival order, each answered', async () => {
  const store = fakeStore(3);
  const names = Array.from({ length: 10 }, (_, i) => `w${i}`);
  const results = await Promise.all(names.map((n) => store.add(n)));
  assert.deepEqual(results, names, 'every caller gets its own result');
  assert.deepEqual(store.commits, [['w0', 'w1', 'w2'], ['w3', 'w4', 'w5'], ['w6', 'w7', 'w8'], ['w9']]);
  assert.deepEqual(store.state(), names);
});

test('a write too large even alone fails alone with the store error; the writes around it commit', async () => {
  const store = fakeStore(3);
  const results = await Promise.allSettled([
    store.add('a'),
    store.add('b1', 'b2', 'b3', 'b4'), // 4 > 3: too large whatever else is in the batch
    store.add('c'),
    store.add('d1', 'd2'),
  ]);
  assert.deepEqual(
    results.map((r) => r.status),
    ['fulfilled', 'rejected', 'fulfilled', 'fulfilled'],
  );
  const reason = (results[1] as PromiseRejectedResult).reason;
  assert.ok(reason instanceof TooLarge, String(reason));
  assert.equal(reason.message, '4 > 3');
  // 'a' went alone (b was deferred to start the next batch), then b failed as the first of its batch.
  assert.deepEqual(store.commits, [['a'], ['c', 'd1', 'd2']]);
  assert.deepEqual(store.state(), ['a', 'c', 'd1', 'd2'], 'nothing of the large write was applied');
});

test('the first write of a queue that does not fit fails at once; a write that exactly fits commits', async () => {
  const store = fakeStore(3);
  await assert.rejects(store.add('1', '2', '3', '4'), TooLarge);
  assert.equal(await store.add('x', 'y', 'z'), 'x+y+z');
  assert.deepEqual(store.commits, [[], ['x', 'y', 'z']]);
});

test('without a limit (the file stores) one batch takes every queued write', async () => {
  const store = fakeStore(undefined);
  const names = Array.from({ length: 300 }, (_, i) => `w${i}`);
  await Promise.all(names.map((n) => store.add(n)));
  await store.add('a', 'b', 'c', 'd', 'e');
  assert.equal(store.commits.length, 2);
  assert.deepEqual(store.commits[0], names);
});

test('a failed commit fails every write queued with it, also those left for the next commit', async () => {
  const store = fakeStore(2);
  store.control.fail = new Error('store down');
  const results = await Promise.allSettled(['a', 'b', 'c', 'd', 'e'].map((n) => store.add(n)));
  for (const r of results) {
    assert.equal(r.status, 'rejected');
    assert.equal((r as PromiseRejectedResult).reason.message, 'store down');
  }
  store.control.fail = undefined;
  await Promise.all(['f', 'g', 'h'].map((n) => store.add(n)));
  assert.deepEqual(store.commits, [['f', 'g'], ['h']]);
});
