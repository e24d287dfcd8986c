/**
 * EtcdLock across real processes on one throwaway etcd: fenced counting, crash (kill -9) and clean
 * release, and a holder frozen with SIGSTOP past its TTL. Fixtures import the build (dist/).
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, afterEach, test } from 'node:test';
import { type EtcdClient, loadClient } from '../../src/etcd/_client.js';
import { type Child, DIST, mutatedDist, reapAll, start, tempDir } from '../multiprocess/helpers.js';
import { useEtcd } from './etcd-server.js';

const M = Number(process.env.TOWNLOCK_ETCD_STRESS_M ?? 40);
let raw: EtcdClient;
const etcd = useEtcd({
  setup: async (cluster) => {
    raw = await loadClient(cluster.endpoints(), 2000);
  },
  teardown: async () => raw.close(),
});
afterEach(reapAll);
const tmp = tempDir();
after(tmp.remove);

/** Starts fixture `name` from test/etcd/fixtures with the cluster's endpoints as first argument. */
const fixture = (name: string, args: string[], dist = DIST): Child =>
  start(
    process.execPath,
    [join(import.meta.dirname, 'fixtures', name), etcd.cluster.endpoints().join(','), ...args],
    {
      TOWNLOCK_DIST: dist,
    },
  );

/** Runs 4 counter processes of `m` increments on a fresh lock with the build at `dist`; returns the count. */
async function count(m: number, dist = DIST): Promise<{ name: string; kids: Child[]; total: number }> {
  const name = fresh();
  const kids = Array.from({ length: 4 }, () => fixture('counter.mjs', [name, String(m)], dist));
  for (const k of kids) assert.equal(await k.exited(50_000), 0, k.stderr());
  const total = Number((await raw.range({ key: `counter/${name}` })).kvs[0]?.value ?? 0);
  return { name, kids, total };
}

/** Parses a "held TOKEN KEY T" line. */
const held = (line: string) => {
  const [, token, key, at] = line.split(' ');
  return { token: BigInt(token!), key: key!, at: Number(at) };
};

/** Absolute ms, comparable with the fixtures' timestamps. */
const now = () => performance.timeOrigin + performance.now();

let seq = 0;
const fresh = () => `mp-${process.pid}-${++seq}`;

test(`4 processes x ${M} fenced increments end exact; a write with an older token is refused`, {
  timeout: 60_000,
}, async (t) => {
  if (!etcd.ready(t)) return;
  const { name, kids, total } = await count(M);
  assert.equal(total, 4 * M);
  // Every child's first hold is long gone: a write fenced with its token must not apply.
  for (const k of kids) {
    const [, key, token] = (await k.waitFor(/^first /)).split(' ');
    const res = await raw.txn({
      compare: [{ key: key!, target: 'create', op: '=', value: BigInt(token!) }],
      success: [{ type: 'put', key: `counter/${name}`, value: '0' }],
      failure: [],
    });
    assert.equal(res.succeeded, false, `token ${token} must be refused`);
  }
  assert.equal((await raw.range({ key: `counter/${name}` })).kvs[0]?.value, String(4 * M));
});

test('control: without waiting for the key before ours, the same count comes out short', {
  timeout: 60_000,
}, async (t) => {
  if (!etcd.ready(t)) return;
  const mutated = mutatedDist(
    tmp.dir,
    'dist-no-wait',
    'etcd/_lock-keys.js',
    /while \(before !== undefined\) \{/,
    'while (false) {',
  );
  let short = 0;
  for (let round = 0; round < 5 && short === 0; round++) short = 4 * M - (await count(M, mutated)).total;
  t.diagnostic(`control run: ${short} increments lost`);
  assert.ok(short > 0, 'the control run should have lost increments');
});

test('holder kill -9: a waiter holds the lock within leaseTtl + 1 s', { timeout: 30_000 }, async (t) => {
  if (!etcd.ready(t)) return;
  const name = fresh();
  const holder = fixture('hold.mjs', [name, '2']);
  const first = held(await holder.waitFor(/^held /));
  const waiter = fixture('hold.mjs', [name, '2']);
  await waiter.waitFor('waiting');
  const killedAt = now();
  holder.proc.kill('SIGKILL');
  const second = held(await waiter.waitFor(/^held /, 10_000));
  assert.ok(second.at - killedAt < 3000, `took ${Math.round(second.at - killedAt)} ms`);
  assert.ok(second.token > first.token);
  waiter.send('close');
  await waiter.waitFor('closed');
});

test('a clean exit (close) releases the lock at once, not after the TTL', { timeout: 30_000 }, async (t) => {
  if (!etcd.ready(t)) return;
  const name = fresh();
  const holder = fixture('hold.mjs', [name, '10']);
  await holder.waitFor(/^held /);
  const waiter = fixture('hold.mjs', [name, '10']);
  await waiter.waitFor('waiting');
  const closedAt = now();
  holder.send('close');
  const second = held(await waiter.waitFor(/^held /, 5000));
  assert.ok(second.at - closedAt < 1000, `took ${Math.round(second.at - closedAt)} ms`);
  assert.equal(await holder.exited(), 0);
  waiter.send('close');
  await waiter.waitFor('closed');
});

test('holder frozen (SIGSTOP) past its TTL: another takes the lock; resumed, the old holder sees lost and its fenced write is refused', {
  timeout: 30_000,
}, async (t) => {
  if (!etcd.ready(t)) return;
  const name = fresh();
  const old = fixture('hold.mjs', [name, '2']);
  const first = held(await old.waitFor(/^held /));
  const next = fixture('hold.mjs', [name, '2']);
  await next.waitFor('waiting');
  old.proc.kill('SIGSTOP');
  try {
    const second = held(await next.waitFor(/^held /, 10_000));
    assert.ok(second.token > first.token, `token ${second.token} after ${first.token}`);
  } finally {
    old.proc.kill('SIGCONT');
  }
  assert.equal(await old.waitFor(/^lost /, 5000), 'lost ERR_LOCK_LOST');
  old.send('write');
  assert.equal(await old.waitFor(/^write /), 'write refused');
  next.send('write');
  assert.equal(await next.waitFor(/^write /), 'write ok');
  old.send('release');
  assert.equal(await old.waitFor(/^unlock |^released$/), 'unlock ERR_LOCK_LOST');
  for (const k of [old, next]) {
    k.send('close');
    await k.waitFor('closed');
  }
});
