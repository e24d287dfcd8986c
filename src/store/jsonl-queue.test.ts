/** JsonlQueue in one process: FIFO, at-most-once dequeue, at-least-once leases. Cross-process: test/multiprocess/store.test.ts. */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterEach, describe, test } from 'node:test';
import { scratchDir } from '../../test/scratch-dir.js';
import { ops } from '../atomic/_fs-ops.js';
import { JsonlQueue } from './index.js';

const root = scratchDir('townlock-queue-');
const original = { ...ops };
afterEach(() => Object.assign(ops, original));
let seq = 0;
const fresh = () => join(root, `q${++seq}`, 'tasks.jsonl');
interface Task {
  id: number;
}

describe('enqueue, dequeue, peek, size', () => {
  test('FIFO; the file holds exactly the pending tasks, one JSON per line', async () => {
    const path = fresh();
    const q = await JsonlQueue.open<Task>(path);
    assert.equal(q.size(), 0);
    assert.equal(await q.dequeue(), undefined);
    await q.enqueue({ id: 1 });
    await q.enqueueMany([{ id: 2 }, { id: 3 }]);
    assert.equal(q.size(), 3);
    assert.deepEqual(await q.peek(), { id: 1 });
    assert.equal(readFileSync(path, 'utf8'), '{"id":1}\n{"id":2}\n{"id":3}\n');
    assert.deepEqual(await q.dequeue(), { id: 1 });
    assert.deepEqual(await q.dequeue(), { id: 2 });
    assert.equal(readFileSync(path, 'utf8'), '{"id":3}\n');
    assert.equal(q.size(), 1);
  });

  test('concurrent dequeues in one process get distinct tasks, one write for the batch', async () => {
    const q = await JsonlQueue.open<Task>(fresh());
    await q.enqueueMany(Array.from({ length: 20 }, (_, id) => ({ id })));
    let renames = 0;
    ops.rename = (a, b) => {
      renames++;
      return original.rename(a, b);
    };
    const got = await Promise.all(Array.from({ length: 25 }, () => q.dequeue()));
    assert.equal(renames, 1);
    assert.deepEqual(
      got.filter(Boolean).map((t) => t!.id),
      Array.from({ length: 20 }, (_, id) => id),
    );
    assert.equal(got.filter((t) => t === undefined).length, 5);
  });

  test('lines written by others are kept byte for byte; a line that is not JSON is ERR_STORE_CORRUPT', async () => {
    const path = fresh();
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, '{"id": 1, "big": 9007199254740993}\n{"id":2}\n');
    const q = await JsonlQueue.open<Task>(path);
    await q.enqueue({ id: 3 });
    assert.equal(readFileSync(path, 'utf8'), '{"id": 1, "big": 9007199254740993}\n{"id":2}\n{"id":3}\n');
    writeFileSync(path, '{"id":1}\n{"id": 2, "to');
    await assert.rejects(q.dequeue(), { code: 'ERR_STORE_CORRUPT', position: 9 });
    assert.equal(readFileSync(path, 'utf8'), '{"id":1}\n{"id": 2, "to', 'never overwritten');
  });

  test('bad arguments are ERR_INVALID_OPTION and change nothing', async () => {
    const path = fresh();
    const q = await JsonlQueue.open<Task>(path);
    await assert.rejects(q.enqueue(undefined as never), { code: 'ERR_INVALID_OPTION', message: /task/ });
    await assert.rejects(q.enqueueMany('x' as never), { code: 'ERR_INVALID_OPTION', message: /tasks/ });
    await assert.rejects(q.enqueueMany([{ id: 1 }, 1n] as never), {
      code: 'ERR_INVALID_OPTION',
      message: /tasks\[1\]/,
    });
    await assert.rejects(q.lease(-5), { code: 'ERR_INVALID_OPTION', message: /visibility/ });
    await assert.rejects(q.ack(42 as never), { code: 'ERR_INVALID_OPTION', message: /lease/ });
    await assert.rejects(JsonlQueue.open(path, { fsync: 1 as never }), { code: 'ERR_INVALID_OPTION' });
    assert.equal(existsSync(path), false);
  });
});

describe('leases: at-least-once', () => {
  test('a leased task is invisible until acked; ack deletes it from both files', async () => {
    const path = fresh();
    const q = await JsonlQueue.open<Task>(path);
    await q.enqueueMany([{ id: 1 }, { id: 2 }]);
    const lease = await q.lease(60_000);
    assert.deepEqual(lease?.task, { id: 1 });
    assert.equal(lease?.deliveries, 1);
    assert.equal(q.size(), 1);
    assert.equal(q.leased(), 1);
    assert.deepEqual(await q.dequeue(), { id: 2 }, 'the leased task is not handed out');
    assert.equal(await q.dequeue(), undefined);
    await q.ack(lease!);
    assert.equal(q.leased(), 0);
    assert.deepEqual(JSON.parse(readFileSync(`${path}.leases.json`, 'utf8')).leases, []);
    await assert.rejects(q.ack(lease!), { code: 'ERR_LEASE_EXPIRED' });
  });

  test('a lease that runs out makes its task visible again, first, with a new lease id', async () => {
    const q = await JsonlQueue.open<Task>(fresh());
    await q.enqueueMany([{ id: 1 }, { id: 2 }]);
    const first = await q.lease(1);
    await new Promise((r) => setTimeout(r, 5)); // let the 1 ms visibility pass
    assert.equal(q.size(), 2, 'visible again');
    const again = await q.lease(60_000);
    assert.deepEqual(again?.task, { id: 1 });
    assert.equal(again?.deliveries, 2);
    assert.notEqual(again?.id, first?.id);
    await assert.rejects(
      q.ack(first!),
      { code: 'ERR_LEASE_EXPIRED' },
      'handed out again: the old lease cannot ack',
    );
    await q.ack(again!);
    assert.deepEqual(await q.dequeue(), { id: 2 });
  });

  test('a late ack is accepted while nobody took the task since; release() and renew()', async () => {
    const q = await JsonlQueue.open<Task>(fresh());
    await q.enqueueMany([{ id: 1 }, { id: 2 }]);
    const late = await q.lease(1);
    await new Promise((r) => setTimeout(r, 5));
    await q.ack(late!);
    assert.equal(q.size(), 1);
    const held = await q.lease(60_000);
    const deadline = await q.renew(held!, 120_000);
    assert.ok(deadline > held!.expiresAt);
    await q.release(held!);
    assert.equal(q.size(), 1);
    assert.deepEqual(await q.dequeue(), { id: 2 }, 'a released task is visible again at once');
  });

  test('a batch that re-leases an expired lease and moves a task: every crash point keeps each task stored once', async () => {
    // The batch writes up to three files (leases with `pending`, queue, leases); fail each rename in turn,
    // as a crash there would leave it, and count what the files hold from a fresh process's view.
    for (const failAt of [1, 2, 3]) {
      const path = fresh();
      const q = await JsonlQueue.open<Task>(path);
      await q.enqueueMany([{ id: 1 }, { id: 2 }]);
      await q.lease(1);
      await new Promise((r) => setTimeout(r, 5)); // the 1 ms lease of task 1 runs out
      let renames = 0;
      ops.rename = async (a, b) => {
        if (++renames === failAt)
          throw Object.assign(new Error(`crash at rename ${failAt}`), { code: 'EIO' });
        return original.rename(a, b);
      };
      const batch = await Promise.allSettled([q.lease(60_000), q.lease(60_000)]); // task 1 again, task 2
      Object.assign(ops, original);
      assert.ok(
        batch.every((r) => r.status === 'rejected'),
        `rename ${failAt}: the batch failed`,
      );
      const after = await JsonlQueue.open<Task>(path);
      assert.equal(after.size() + after.leased(), 2, `rename ${failAt}: each task stored once`);
      const leases = JSON.parse(readFileSync(`${path}.leases.json`, 'utf8'));
      const lines = [...(leases.pending?.leases ?? []), ...leases.leases].map(
        (l: { line: string }) => l.line,
      );
      assert.ok(new Set(lines).size <= 2, `rename ${failAt}: no lease recorded twice in one list`);
      // The next commit settles whatever the crash left: all done or nothing done.
      const got: number[] = [];
      for (let t = await after.dequeue(); t !== undefined; t = await after.dequeue()) got.push(t.id);
      assert.deepEqual(got.sort(), failAt < 3 ? [1, 2] : [], `rename ${failAt}`);
      assert.equal(after.size() + after.leased(), failAt < 3 ? 0 : 2);
    }
  });

  test('re-leasing an expired lease replaces its record (one lease per task in the leases file)', async () => {
    const path = fresh();
    const q = await JsonlQueue.open<Task>(path);
    await q.enqueue({ id: 1 });
    for (let i = 0; i < 3; i++) {
      await q.lease(1);
      await new Promise((r) => setTimeout(r, 5));
    }
    const file = JSON.parse(readFileSync(`${path}.leases.json`, 'utf8'));
    assert.equal(file.leases.length, 1);
    assert.equal(file.leases[0].deliveries, 3);
    assert.equal(file.pending, undefined);
  });
});

describe('typed errors', () => {
  test('a corrupt leases file is ERR_STORE_CORRUPT with the position; a symlink loop is ERR_STORE_IO', async () => {
    const path = fresh();
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(`${path}.leases.json`, '{"leases": [1,');
    await assert.rejects(JsonlQueue.open(path), {
      code: 'ERR_STORE_CORRUPT',
      position: 14,
      message: /leases\.json.*position 14/,
    });
    const d = dirname(path);
    symlinkSync('loop2', join(d, 'loop1'));
    symlinkSync('loop1', join(d, 'loop2'));
    await assert.rejects(JsonlQueue.open(join(d, 'loop1')), { code: 'ERR_STORE_IO', message: /ELOOP/ });
  });
});
