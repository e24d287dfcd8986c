/**
 * The internal etcd client (src/etcd/_client.ts) against a throwaway etcd: conversions of every op and
 * result, compares on revisions, reads at a past revision, watches from a revision (and from a
 * compacted one), leases, and a write retried past a dead endpoint.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Etcd3 } from 'etcd3';
import {
  CompactedError,
  type EtcdClient,
  loadClient,
  prefixEnd,
  type WatchEnd,
  type WatchEvent,
} from '../../src/etcd/_client.js';
import { freePort, useEtcd } from './etcd-server.js';

let client: EtcdClient;
const etcd = useEtcd({
  setup: async (cluster) => {
    client = await loadClient(cluster.endpoints(), 2000);
  },
  teardown: async () => client.close(),
});

test('prefixEnd covers exactly the keys under a prefix', () => {
  assert.equal(prefixEnd('a/'), 'a0');
  assert.equal(prefixEnd(''), '\0');
  assert.throws(() => prefixEnd('é'), RangeError);
});

test('put, range (now and at a past revision), delete, txn with revision compares', async (t) => {
  if (!etcd.ready(t)) return;
  const first = await client.put({ key: 'c/a', value: '1' });
  const second = await client.put({ key: 'c/a', value: '2', prevKv: true });
  assert.equal(second.prevKv?.value, '1');
  assert.equal(second.prevKv?.createRevision, first.revision);
  await client.put({ key: 'c/b', value: 'x' });
  const now = await client.range({ key: 'c/', rangeEnd: prefixEnd('c/') });
  assert.deepEqual(
    now.kvs.map((kv) => [kv.key, kv.value, kv.version]),
    [
      ['c/a', '2', 2n],
      ['c/b', 'x', 1n],
    ],
  );
  assert.equal(now.count, 2);
  const past = await client.range({ key: 'c/a', revision: first.revision });
  assert.equal(past.kvs[0]?.value, '1');
  const newest = await client.range({
    key: 'c/',
    rangeEnd: prefixEnd('c/'),
    sortBy: 'create',
    sortOrder: 'descend',
    limit: 1,
    keysOnly: true,
  });
  assert.deepEqual([newest.kvs[0]?.key, newest.kvs[0]?.value, newest.more], ['c/b', '', true]);

  const swap = (modRevision: bigint) =>
    client.txn({
      compare: [{ key: 'c/a', target: 'mod', op: '=', value: modRevision }],
      success: [
        { type: 'put', key: 'c/a', value: '3' },
        { type: 'range', key: 'c/b' },
      ],
      failure: [{ type: 'range', key: 'c/a' }],
    });
  const lost = await swap(first.revision);
  assert.equal(lost.succeeded, false);
  assert.deepEqual(lost.results[0]?.type === 'range' && lost.results[0].kvs[0]?.value, '2');
  const won = await swap(second.revision);
  assert.equal(won.succeeded, true);
  assert.deepEqual(
    won.results.map((r) => r.type),
    ['put', 'range'],
  );
  const none = await client.txn({
    compare: [{ key: 'c/', rangeEnd: prefixEnd('c/'), target: 'create', op: '=', value: 0n }],
    success: [],
    failure: [{ type: 'delete', key: 'c/', rangeEnd: prefixEnd('c/'), prevKv: true }],
  });
  assert.equal(none.succeeded, false, 'a range compare fails when any key in it exists');
  const deleted = none.results[0];
  assert.ok(deleted?.type === 'delete');
  assert.equal(deleted.deleted, 2);
  assert.deepEqual(deleted.prevKvs.map((kv) => kv.value).sort(), ['3', 'x']);
});

test('a watch from a revision replays what happened since, then follows', async (t) => {
  if (!etcd.ready(t)) return;
  const start = await client.put({ key: 'w/a', value: '1' });
  await client.delete({ key: 'w/a' });
  const events: WatchEvent[] = [];
  let created = 0n;
  const seen = new Promise<void>((resolve) => {
    const watch = client.watch(
      { key: 'w/', rangeEnd: prefixEnd('w/'), fromRevision: start.revision, prevKv: true },
      {
        onCreated: (revision) => {
          created = revision;
        },
        onEvents: (batch) => {
          events.push(...batch);
          if (events.length === 3) {
            watch.close();
            resolve();
          }
        },
        onEnd: () => {},
      },
    );
  });
  await client.put({ key: 'w/b', value: '2' });
  await seen;
  assert.ok(created >= start.revision + 1n);
  assert.deepEqual(
    events.map((e) => [e.type, e.kv.key, e.kv.modRevision]),
    [
      ['put', 'w/a', start.revision],
      ['delete', 'w/a', start.revision + 1n],
      ['put', 'w/b', start.revision + 2n],
    ],
  );
  assert.equal(events[1]?.prevKv?.value, '1');
});

test('a watch or a read from a compacted revision fails, saying where the history now starts', async (t) => {
  if (!etcd.ready(t)) return;
  const old = await client.put({ key: 'k/a', value: '1' });
  const later = await client.put({ key: 'k/a', value: '2' });
  const raw = new Etcd3({ hosts: `http://${etcd.cluster.endpoints()[0]}` });
  try {
    await raw.kv.compact({ revision: String(later.revision), physical: true });
  } finally {
    raw.close();
  }
  const end = await new Promise<WatchEnd>((resolve) => {
    client.watch({ key: 'k/a', fromRevision: old.revision }, { onEvents: () => {}, onEnd: resolve });
  });
  assert.equal(end.compactRevision, later.revision);
  await assert.rejects(client.range({ key: 'k/a', revision: old.revision }), CompactedError);
});

test('leases: grant, keep-alive answers, revoke deletes the keys, keep-alive then answers 0', async (t) => {
  if (!etcd.ready(t)) return;
  const { id, ttl } = await client.leaseGrant(5);
  assert.equal(ttl, 5);
  await client.put({ key: 'l/a', value: 'v', lease: id });
  const answers: number[] = [];
  const ask = () =>
    new Promise<number>((resolve, reject) => {
      const stream = client.keepAlive(id, {
        onAnswer: (left) => {
          stream.close();
          resolve(left);
        },
        onError: reject,
      });
      stream.send();
    });
  answers.push(await ask());
  await client.leaseRevoke(id);
  await client.leaseRevoke(id); // a second revoke is harmless
  assert.equal((await client.range({ key: 'l/a' })).kvs.length, 0);
  answers.push(await ask());
  assert.deepEqual(answers, [5, 0]);
});

test('a write whose endpoint refuses connections goes to the next one', async (t) => {
  if (!etcd.ready(t)) return;
  const dead = `127.0.0.1:${await freePort()}`;
  const two = await loadClient([dead, ...etcd.cluster.endpoints()], 2000);
  try {
    const res = await two.put({ key: 'd/a', value: 'v' }); // not idempotent: retried only because never sent
    assert.ok(res.revision > 0n);
  } finally {
    two.close();
  }
});
