/**
 * EtcdLock behaviour beyond the shared Lock contract, in one process against a throwaway etcd: the key
 * space after timeouts and aborts, FIFO order, fencing tokens, lease loss, close(), option validation.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type EtcdClient, loadClient, prefixEnd } from '../../src/etcd/_client.js';
import { Etcd, type EtcdLock } from '../../src/etcd/index.js';
import { useEtcd } from './etcd-server.js';

let raw: EtcdClient;
const sessions: Etcd[] = [];
const etcd = useEtcd({
  setup: async (cluster) => {
    raw = await loadClient(cluster.endpoints(), 2000);
  },
  teardown: async () => {
    for (const s of sessions) await s.close().catch(() => {});
    raw.close();
  },
});

/** A new session on the test cluster, closed after the file. */
async function connect(options: { leaseTtl?: number; prefix?: string } = {}): Promise<Etcd> {
  const s = await Etcd.connect({ endpoints: etcd.cluster.endpoints(), ...options });
  sessions.push(s);
  return s;
}

/** The keys under a lock's prefix, oldest first. */
async function keysOf(lock: EtcdLock): Promise<string[]> {
  const res = await raw.range({
    key: lock.lockPrefix,
    rangeEnd: prefixEnd(lock.lockPrefix),
    sortBy: 'create',
  });
  return res.kvs.map((kv) => kv.key);
}

/** Resolves once `count` keys (holders and waiters) exist under the lock's prefix. */
async function queued(lock: EtcdLock, count: number): Promise<void> {
  const due = performance.now() + 5000;
  while ((await keysOf(lock)).length < count) {
    if (performance.now() > due) throw new Error(`${lock.lockPrefix} never had ${count} keys`);
    await sleep(5);
  }
}

let seq = 0;
const fresh = () => `lock-${++seq}`;

test('a timed-out, an aborted and a busy tryLock waiter leave no key behind', async (t) => {
  if (!etcd.ready(t)) return;
  const [a, b] = [await connect(), await connect()];
  const name = fresh();
  const holder = a.lock(name);
  await holder.lock();
  assert.deepEqual(await keysOf(holder), [holder.key]);
  await assert.rejects(b.lock(name, { timeout: 100 }).lock(), { code: 'ERR_LOCK_TIMEOUT' });
  assert.deepEqual(await keysOf(holder), [holder.key], 'after the timeout');
  const ac = new AbortController();
  const waiting = b.lock(name, { signal: ac.signal }).lock();
  await queued(holder, 2);
  ac.abort();
  await assert.rejects(waiting, { code: 'ERR_LOCK_ABORTED' });
  assert.deepEqual(await keysOf(holder), [holder.key], 'after the abort');
  assert.equal(await b.lock(name, { type: 'shared' }).tryLock(), false);
  assert.deepEqual(await keysOf(holder), [holder.key], 'after tryLock');
  await holder.unlock();
  assert.deepEqual(await keysOf(holder), [], 'after unlock');
});

test('waiters (one Etcd each) get the lock in the order they queued in etcd, and a reader queued behind a writer waits', async (t) => {
  if (!etcd.ready(t)) return;
  const s = await connect();
  const name = fresh();
  const first = s.lock(name);
  await first.lock();
  const order: string[] = [];
  const queue = async (label: string, type: 'exclusive' | 'shared') => {
    const l = (await connect()).lock(name, { type });
    const keysBefore = (await keysOf(first)).length;
    const held = l.lock().then(() => order.push(label));
    await queued(first, keysBefore + 1);
    return { l, held };
  };
  const w1 = await queue('w1', 'exclusive');
  const r1 = await queue('r1', 'shared');
  const r2 = await queue('r2', 'shared');
  const w2 = await queue('w2', 'exclusive');
  const late = await connect();
  assert.equal(await late.lock(name, { type: 'shared' }).tryLock(), false, 'no reader barges past w1');
  await first.unlock();
  await w1.held;
  assert.deepEqual(order, ['w1']);
  await w1.l.unlock();
  await Promise.all([r1.held, r2.held]);
  assert.deepEqual(order.slice(1).sort(), ['r1', 'r2'], 'both readers together');
  await r1.l.unlock();
  await sleep(30); // a window for a wrong grant to show, not a wait for anything
  assert.equal(order.length, 3, 'w2 waits for the last reader');
  await r2.l.unlock();
  await w2.held;
  assert.deepEqual(order.at(-1), 'w2');
  await w2.l.unlock();
});

test('handles of one Etcd queue in this process first: only the head has a key in etcd, FIFO, readers together', async (t) => {
  if (!etcd.ready(t)) return;
  const s = await connect();
  const name = fresh();
  const first = s.lock(name);
  await first.lock();
  const order: string[] = [];
  const waiters = (
    [
      ['w1', 'exclusive'],
      ['r1', 'shared'],
      ['r2', 'shared'],
      ['w2', 'exclusive'],
    ] as const
  ).map(([label, type]) => {
    const l = s.lock(name, { type });
    return { l, held: l.lock().then(() => order.push(label)) };
  });
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(await keysOf(first), [first.key], 'the waiters wait in the process, not in etcd');
  assert.equal(await s.lock(name, { type: 'shared' }).tryLock(), false, 'no reader barges past w1');
  await first.unlock();
  await waiters[0]!.held;
  assert.deepEqual(order, ['w1']);
  await waiters[0]!.l.unlock();
  await Promise.all([waiters[1]!.held, waiters[2]!.held]);
  assert.deepEqual(order.slice(1).sort(), ['r1', 'r2'], 'both readers together');
  assert.equal((await keysOf(first)).length, 2, 'each reader holds a key of its own');
  await waiters[1]!.l.unlock();
  await waiters[2]!.l.unlock();
  await waiters[3]!.held;
  assert.equal(order.at(-1), 'w2');
  await waiters[3]!.l.unlock();
  assert.deepEqual(await keysOf(first), []);
});

test('fencing tokens are the key create revisions and strictly increase from holder to holder', async (t) => {
  if (!etcd.ready(t)) return;
  const [a, b] = [await connect(), await connect()];
  const name = fresh();
  let last = 0n;
  for (let i = 0; i < 6; i++) {
    const l = (i % 2 ? a : b).lock(name);
    await l.lock();
    const token = BigInt(l.fencingToken!);
    const kv = (await raw.range({ key: l.key! })).kvs[0]!;
    assert.equal(kv.createRevision, token);
    assert.ok(token > last, `token ${token} after ${last}`);
    last = token;
    await l.unlock();
    assert.equal(l.fencingToken, undefined);
  }
});

test('one session holds and waits on many locks without a listener-leak warning', async (t) => {
  if (!etcd.ready(t)) return;
  const [a, b] = [await connect(), await connect()];
  const warnings: Error[] = [];
  const onWarning = (w: Error) => warnings.push(w);
  process.on('warning', onWarning);
  try {
    const names = Array.from({ length: 15 }, fresh);
    const held = names.map((n) => a.lock(n));
    for (const l of held) await l.lock();
    const waiters = names.map((n) => b.lock(n));
    const waits = waiters.map((l) => l.lock());
    for (const l of waiters) await queued(l, 2);
    for (const l of held) await l.unlock();
    await Promise.all(waits);
    for (const l of waiters) await l.unlock();
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(
      warnings.map((w) => w.message),
      [],
    );
  } finally {
    process.off('warning', onWarning);
  }
});

test('a timeout beyond 2^31 ms and a timeout of 0 both wait (no clamped timer fires at once)', async (t) => {
  if (!etcd.ready(t)) return;
  const [a, b] = [await connect(), await connect()];
  const name = fresh();
  const holder = a.lock(name);
  await holder.lock();
  for (const timeout of [2 ** 31 + 10, 0]) {
    const ac = new AbortController();
    const waiting = b.lock(name, { timeout, signal: ac.signal }).lock();
    setTimeout(() => ac.abort(), 100);
    await assert.rejects(waiting, { code: 'ERR_LOCK_ABORTED' }, `timeout ${timeout} waited until the abort`);
  }
  await holder.unlock();
});

test('names and prefixes are isolated', async (t) => {
  if (!etcd.ready(t)) return;
  const s = await connect();
  const other = await connect({ prefix: 'other-town/' });
  const name = fresh();
  const locks = [s.lock(name), s.lock(`${name}/x`), s.lock(`${name}%2Fx`), other.lock(name)];
  for (const l of locks) assert.equal(await l.tryLock(), true, `${l.lockPrefix} is free`);
  assert.equal(new Set(locks.map((l) => l.lockPrefix)).size, 4);
  for (const l of locks) await l.unlock();
});

test('close() releases every lock at once, aborts lost, and fails waits and later calls', async (t) => {
  if (!etcd.ready(t)) return;
  const a = await Etcd.connect({ endpoints: etcd.cluster.endpoints(), leaseTtl: 30 });
  const b = await connect();
  const names = [fresh(), fresh(), fresh()];
  const held = names.map((n) => a.lock(n));
  for (const l of held) await l.lock();
  const waiter = a.lock(fresh());
  await b.lock(waiter.name).lock();
  const waiting = waiter.lock();
  waiting.catch(() => {}); // asserted below
  const inside = held[0]!.lost;
  const runningName = fresh();
  const running = a.withReadLock(runningName, () => sleep(200).then(() => 'done'));
  running.catch(() => {}); // asserted below
  await queued(waiter, 2);
  await queued(a.lock(runningName), 1);
  const start = performance.now();
  await a.close();
  const others = names.map((n) => b.lock(n, { timeout: -1 }));
  for (const l of others) assert.equal(await l.tryLock(), true, 'released by the revoke');
  assert.ok(performance.now() - start < 1000, 'at once, not after the 30 s TTL');
  assert.equal(inside.aborted, true);
  assert.equal((inside.reason as { code?: string }).code, 'ERR_LOCK_LOST');
  assert.equal(held[0]!.isLocked, false);
  await assert.rejects(held[0]!.unlock(), { code: 'ERR_LOCK_LOST' }, 'unlock reports the loss once');
  await assert.rejects(held[0]!.unlock(), { code: 'ERR_NOT_LOCKED' });
  await assert.rejects(waiting, { code: 'ERR_ETCD_UNAVAILABLE' });
  await assert.rejects(running, { code: 'ERR_LOCK_LOST' }, 'withLock says its section was not protected');
  await assert.rejects(a.lock(fresh()).lock(), { code: 'ERR_ETCD_UNAVAILABLE' });
  await a.close(); // idempotent
  for (const l of others) await l.unlock();
});

test('a lease revoked behind the session: the holder learns it within TTL/3, a waiter queues again', async (t) => {
  if (!etcd.ready(t)) return;
  const a = await connect({ leaseTtl: 3 });
  const b = await connect();
  const name = fresh();
  const holder = a.lock(name);
  await holder.lock();
  const other = b.lock(fresh());
  await other.lock();
  const waiter = a.lock(other.name, { timeout: 10_000 });
  const waiting = waiter.lock();
  await queued(other, 2);
  const lease = (await raw.range({ key: holder.key! })).kvs[0]!.lease;
  const start = performance.now();
  await raw.leaseRevoke(lease);
  const lost = await new Promise<Error>((resolve) =>
    holder.lost.addEventListener('abort', () => resolve(holder.lost.reason), { once: true }),
  );
  assert.ok(performance.now() - start < 1000 + 300, 'within one keep-alive period');
  assert.equal((lost as { code?: string }).code, 'ERR_LOCK_LOST');
  await assert.rejects(holder.unlock(), { code: 'ERR_LOCK_LOST' });
  await other.unlock();
  await waiting;
  assert.notEqual((await raw.range({ key: waiter.key! })).kvs[0]!.lease, lease, 'queued under a new lease');
  await waiter.unlock();
  assert.equal(await holder.tryLock(), true, 'the session goes on with its new lease');
  await holder.unlock();
});

test('a lease revoked on the server while withLock runs: another Etcd takes the lock, and withLock rejects with ERR_LOCK_LOST at once', async (t) => {
  if (!etcd.ready(t)) return;
  // A TTL of 30 s: the keep-alive (every 10 s) is not what notices the revoke within this test.
  const a = await connect({ leaseTtl: 30 });
  const b = await connect();
  const name = fresh();
  const other = a.lock(fresh());
  await other.lock(); // another hold of the same session lease
  const holder = a.lock(name);
  let bHeld = false;
  const start = performance.now();
  const outcome = holder.withLock(async () => {
    const lease = (await raw.range({ key: holder.key! })).kvs[0]!.lease;
    await raw.leaseRevoke(lease); // an operator, or etcd itself, ends the lease
    await b.withWriteLock(name, () => {
      bHeld = true; // exclusion is broken: the first holder is still inside its callback
    });
    return 'done';
  });
  await assert.rejects(
    outcome,
    { code: 'ERR_LOCK_LOST' },
    'withLock must not claim its section was protected',
  );
  assert.ok(bHeld);
  assert.ok(performance.now() - start < 3000, 'noticed by the release, not by a keep-alive 10 s later');
  assert.equal(holder.lost.aborted, true, 'lost aborts');
  assert.equal((holder.lost.reason as { code?: string }).code, 'ERR_LOCK_LOST');
  assert.equal(other.lost.aborted, true, 'the other hold of the lease learns it too');
  await assert.rejects(other.unlock(), { code: 'ERR_LOCK_LOST' });
  assert.equal(await holder.tryLock(), true, 'the session goes on with a new lease');
  await holder.unlock();
});

test('a lock key deleted behind a live lease: unlock() rejects with ERR_LOCK_LOST; other holds keep their lock', async (t) => {
  if (!etcd.ready(t)) return;
  const a = await connect({ leaseTtl: 30 });
  const [one, two] = [a.lock(fresh()), a.lock(fresh())];
  await one.lock();
  await two.lock();
  await raw.delete({ key: one.key! }); // by hand: etcdctl del
  await assert.rejects(one.unlock(), { code: 'ERR_LOCK_LOST' });
  assert.equal(one.lost.aborted, true);
  assert.equal(two.lost.aborted, false, 'the lease is alive: the other hold is not lost');
  await two.unlock();
});

test('an unlock that cannot reach etcd fails within callTimeout, and the session deletes the key once etcd is back', async (t) => {
  if (!etcd.ready(t)) return;
  const a = await Etcd.connect({ endpoints: etcd.cluster.endpoints(), leaseTtl: 30, callTimeout: 500 });
  sessions.push(a);
  const lock = a.lock(fresh());
  await lock.lock();
  const member = etcd.cluster.members[0]!;
  await member.kill('SIGKILL'); // connections refused: the delete never reaches etcd
  try {
    const start = performance.now();
    await assert.rejects(lock.unlock(), { code: 'ERR_ETCD_UNAVAILABLE' });
    const took = performance.now() - start;
    assert.ok(took >= 450 && took < 1500, `unlock failed after ${took} ms`);
    assert.equal(lock.isLocked, false, 'the handle is released all the same');
  } finally {
    await member.restart();
  }
  // The lease survives the restart (etcd extends leases when a leader takes over): only the session's
  // retried delete can free the lock before the 30 s TTL.
  const b = await connect();
  const start = performance.now();
  const next = b.lock(lock.name, { timeout: 10_000 });
  await next.lock();
  assert.ok(
    performance.now() - start < 8000,
    `took ${performance.now() - start} ms: the key outlived the retry`,
  );
  await next.unlock();
});

test('invalid options fail with ERR_INVALID_OPTION naming the option', async () => {
  const endpoints = ['127.0.0.1:1'];
  const cases: [Record<string, unknown>, string][] = [
    [{ endpoints: [] }, 'endpoints'],
    [{ endpoints: ['no-port'] }, 'endpoints'],
    [{ endpoints: 'h:1' }, 'endpoints'],
    [{ endpoints, prefix: 7 }, 'prefix'],
    [{ endpoints, prefix: 'town\uD800/' }, 'prefix'], // a lone surrogate has no UTF-8 form
    [{ endpoints, leaseTtl: 0 }, 'leaseTtl'],
    [{ endpoints, leaseTtl: 1.5 }, 'leaseTtl'],
    [{ endpoints, callTimeout: 0 }, 'callTimeout'],
    [{ endpoints, callTimeout: Number.NaN }, 'callTimeout'],
  ];
  for (const [options, option] of cases) {
    await assert.rejects(Etcd.connect(options as never), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'ERR_INVALID_OPTION');
      assert.match(err.message, new RegExp(`option ${option}:`));
      return true;
    });
  }
});

test('invalid lock names and lock options fail with ERR_INVALID_OPTION', async (t) => {
  if (!etcd.ready(t)) return;
  const s = await connect();
  const cases: [() => unknown, string][] = [
    [() => s.lock(''), 'name'],
    [() => s.lock(3 as never), 'name'],
    [() => s.lock('a\uD800b'), 'name'], // a lone surrogate: encodeURIComponent would throw URIError
    [() => s.lock('\uDC00'), 'name'],
    [() => s.lock('n', { type: 'read' as never }), 'type'],
    [() => s.lock('n', { timeout: '5' as never }), 'timeout'],
    [() => s.lock('n', { signal: {} as never }), 'signal'],
  ];
  for (const [make, option] of cases) {
    assert.throws(make, (err: Error & { code?: string }) => {
      assert.equal(err.code, 'ERR_INVALID_OPTION');
      assert.match(err.message, new RegExp(`option ${option}:`));
      return true;
    });
  }
});

test('connecting where no etcd answers fails with ERR_ETCD_UNAVAILABLE within callTimeout, naming the endpoints', async () => {
  // Warm the lazy import so the measure is the call's deadline, not module loading.
  await Etcd.connect({ endpoints: ['127.0.0.1:1'], callTimeout: 50 }).catch(() => {});
  const start = performance.now();
  await assert.rejects(
    Etcd.connect({ endpoints: ['127.0.0.1:1', 'http://127.0.0.1:2'], callTimeout: 300 }),
    (err: Error & { code?: string; endpoints?: string[] }) => {
      assert.equal(err.code, 'ERR_ETCD_UNAVAILABLE');
      assert.match(err.message, /127\.0\.0\.1:1, 127\.0\.0\.1:2/);
      assert.deepEqual(err.endpoints, ['127.0.0.1:1', '127.0.0.1:2']);
      return true;
    },
  );
  const took = performance.now() - start;
  assert.ok(took >= 290 && took < 800, `took ${took} ms`);
});
