/**
 * EtcdLock on a 3-member loopback cluster while one follower is frozen (SIGSTOP): a black-holed member
 * that neither answers nor refuses. The quorum (the leader and the other follower) stays healthy, so
 * nobody should lose a lock, wait longer than a few keep-alive periods, or be blocked by a key that a
 * late copy of a resent request recreated after its release. The frozen member is listed first, so every
 * process starts on it. Fixtures import the build (dist/).
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { afterEach, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type EtcdClient, loadClient, prefixEnd } from '../../src/etcd/_client.js';
import { Etcd } from '../../src/etcd/index.js';
import { type Child, DIST, reapAll, start } from '../multiprocess/helpers.js';
import { type Member, useEtcd } from './etcd-server.js';

const etcd = useEtcd({ members: 3 });
afterEach(reapAll);

/** Absolute ms, comparable with the fixtures' timestamps. */
const now = () => performance.timeOrigin + performance.now();

/** A follower, and the endpoints with it first. */
async function followerFirst(): Promise<{ follower: Member; endpoints: string[] }> {
  const leader = await etcd.cluster.leader();
  const follower = etcd.cluster.members.find((m) => m !== leader && !m.dead)!;
  const others = etcd.cluster.endpoints().filter((e) => e !== follower.endpoint);
  return { follower, endpoints: [follower.endpoint, ...others] };
}

/** Freezes `member` for `ms` (the fault's duration, not a wait for anything), then resumes it. */
async function freeze(member: Member, ms: number, during?: () => Promise<void>): Promise<void> {
  process.kill(member.pid(), 'SIGSTOP');
  try {
    await Promise.all([sleep(ms), during?.()]);
  } finally {
    process.kill(member.pid(), 'SIGCONT');
  }
}

/** Resolves once `member` answers a linearizable read itself: it has read what it was sent while frozen. */
async function answers(member: Member): Promise<void> {
  const only = await loadClient([member.endpoint], 5000);
  try {
    await only.range({ key: 'probe' });
  } finally {
    only.close();
  }
}

/** How many watchers `member` serves (its own metric). */
async function watchers(member: Member): Promise<number> {
  const text = await (await fetch(`http://${member.endpoint}/metrics`)).text();
  return Number(/^etcd_debugging_mvcc_watcher_total (\d+)/m.exec(text)?.[1] ?? Number.NaN);
}

/** hold.mjs on `endpoints`: takes lock `name` with session lease `ttl`, then obeys stdin. */
const holder = (endpoints: string[], name: string, ttl: number): Child =>
  start(
    process.execPath,
    [join(import.meta.dirname, 'fixtures', 'hold.mjs'), endpoints.join(','), name, String(ttl)],
    { TOWNLOCK_DIST: DIST },
  );

test('a follower frozen for 1 s under lock traffic leaves no stray key: a late copy of a resent enqueue cannot recreate a released key', {
  timeout: 60_000,
}, async (t) => {
  if (!etcd.ready(t)) return;
  const { follower, endpoints } = await followerFirst();
  const s = await Etcd.connect({ endpoints });
  let raw: EtcdClient | undefined;
  try {
    // Ten loops, so that some enqueue (not only deletes) is in flight on the member when it freezes.
    const names = Array.from({ length: 10 }, (_, i) => `ghost-${process.pid}-${i}`);
    let stop = false;
    let rounds = 0;
    const errors: string[] = [];
    const loops = names.map(async (name) => {
      while (!stop) {
        try {
          const l = s.lock(name, { timeout: 3000 });
          await l.lock();
          await l.unlock();
          rounds++;
        } catch (err) {
          errors.push((err as { code?: string }).code ?? String(err));
        }
      }
    });
    const roundsAfter = async (more: number) => {
      const target = rounds + more;
      while (rounds < target && errors.length === 0) await sleep(5);
    };
    await roundsAfter(20);
    await freeze(follower, 1000, () => roundsAfter(20)); // traffic moves on while it is frozen
    await roundsAfter(40);
    stop = true;
    await Promise.all(loops);
    assert.deepEqual(errors, [], 'no lock() failed');
    await answers(follower);
    // Another process takes the lock at once: no key left behind blocks it (all names: below).
    for (const name of names.slice(0, 2)) {
      const other = holder(etcd.cluster.endpoints(), name, 10);
      await other.waitFor(/^held /, 5000);
      other.send('close');
      await other.waitFor('closed');
    }
    raw = await loadClient(etcd.cluster.endpoints(), 2000);
    for (const name of names) {
      const base = s.lock(name).lockPrefix;
      const keys = await raw.range({ key: base, rangeEnd: prefixEnd(base) });
      assert.deepEqual(
        keys.kvs.map((kv) => kv.key),
        [],
        'no lock key is left while nothing is held',
      );
    }
    // The resent enqueues' keys were released with a tombstone, which lives on the session lease.
    const graves = { key: 'townlock/released/', rangeEnd: prefixEnd('townlock/released/') };
    const buried = (await raw.range(graves)).kvs.length;
    t.diagnostic(`tombstones written: ${buried}`);
    assert.ok(buried > 0, 'the freeze made some enqueue be sent twice');
    await s.close();
    assert.equal((await raw.range(graves)).kvs.length, 0, 'the tombstones went with the session lease');
  } finally {
    raw?.close();
    await s.close().catch(() => {});
  }
});

test('an idle holder whose first endpoint is a frozen follower keeps its lease and its lock (TTL 2 s, frozen 5 s)', {
  timeout: 60_000,
}, async (t) => {
  if (!etcd.ready(t)) return;
  const { follower, endpoints } = await followerFirst();
  const h = holder(endpoints, `idle-${process.pid}`, 2);
  await h.waitFor(/^held /);
  await freeze(follower, 5000);
  assert.deepEqual(
    h.lines.filter((l) => l.startsWith('lost')),
    [],
    'the lease was kept through the other members',
  );
  h.send('release');
  assert.equal(await h.waitFor(/^released$|^unlock /), 'released');
  h.send('close');
  await h.waitFor('closed');
});

test('a waiter whose watch is on a frozen follower gets the lock soon after the holder releases it', {
  timeout: 60_000,
}, async (t) => {
  if (!etcd.ready(t)) return;
  const { follower, endpoints } = await followerFirst();
  const name = `watch-${process.pid}`;
  const a = holder(endpoints, name, 10);
  await a.waitFor(/^held /);
  const before = await watchers(follower);
  const b = holder(endpoints, name, 10);
  await b.waitFor('waiting');
  // The waiter's watch is on the follower (its first endpoint) before the follower freezes.
  const due = performance.now() + 5000;
  while ((await watchers(follower)) <= before) {
    if (performance.now() > due) throw new Error('the waiter never watched on the follower');
    await sleep(10);
  }
  let took = Number.NaN;
  await freeze(follower, 6000, async () => {
    await sleep(200); // the freeze has begun
    const releasedAt = now();
    a.send('release');
    assert.equal(await a.waitFor(/^released$|^unlock /, 5000), 'released');
    const line = await b.waitFor(/^held /, 5500).catch(() => undefined);
    if (line) took = Number(line.split(' ')[3]) - releasedAt;
  });
  t.diagnostic(`the waiter held the lock ${Math.round(took)} ms after the release`);
  assert.ok(
    took < 4500,
    `the waiter held the lock ${Math.round(took)} ms after the release (member still frozen)`,
  );
  for (const k of [a, b]) {
    k.send('close');
    await k.waitFor('closed');
  }
});
