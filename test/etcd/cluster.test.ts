/**
 * EtcdLock on a 3-member loopback cluster while members die: losing the leader delays lock traffic by
 * about one election (progress resumes within 3 s), and losing quorum makes calls fail with
 * ERR_ETCD_UNAVAILABLE within callTimeout instead of hanging.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { afterEach, test } from 'node:test';
import { Etcd } from '../../src/etcd/index.js';
import { type Child, DIST, reapAll, start } from '../multiprocess/helpers.js';
import { useEtcd } from './etcd-server.js';

const etcd = useEtcd({ members: 3 });
afterEach(reapAll);

/** Absolute ms, comparable with the fixtures' timestamps. */
const now = () => performance.timeOrigin + performance.now();

/** The time of the first round worker `w` completed after `since` (it prints "ok N T" for round N). */
async function firstOkAfter(w: Child, since: number, deadlineMs: number): Promise<number> {
  for (let round = 1; ; round++) {
    const at = Number((await w.waitFor(new RegExp(`^ok ${round} `), deadlineMs)).split(' ')[2]);
    if (at > since) return at;
  }
}

test('kill -9 the leader: every worker resumes its lock traffic within 3 s; kill a second member: calls fail with ERR_ETCD_UNAVAILABLE within callTimeout', {
  timeout: 60_000,
}, async (t) => {
  if (!etcd.ready(t)) return;
  const cluster = etcd.cluster;
  const endpoints = cluster.endpoints();
  const name = `cluster-${process.pid}`;
  const fixture = join(import.meta.dirname, 'fixtures', 'worker.mjs');
  const workers = Array.from({ length: 3 }, () =>
    start(process.execPath, [fixture, endpoints.join(','), name], { TOWNLOCK_DIST: DIST }),
  );
  const callTimeout = 1000;
  const probe = await Etcd.connect({ endpoints, callTimeout });
  try {
    for (const w of workers) await w.waitFor(/^ok 3 /, 15_000); // every worker has gone round a few times
    const leader = await cluster.leader();
    const killedAt = now();
    await leader.kill('SIGKILL');
    const resumed = await Promise.all(workers.map((w) => firstOkAfter(w, killedAt, 10_000)));
    const [first, last] = [Math.min(...resumed) - killedAt, Math.max(...resumed) - killedAt].map(Math.round);
    t.diagnostic(`after the leader died: first round done in ${first} ms, every worker's in ${last} ms`);
    assert.ok(last! < 3000, `every worker went on within ${last} ms`);
    // An election costs no one their lock: the new leader extends every lease.
    const errors = workers.flatMap((w) =>
      w.lines.filter((l) => l.startsWith('err ')).map((l) => l.split(' ')[1]),
    );
    t.diagnostic(`worker errors around the election: ${JSON.stringify(errors)}`);
    assert.ok(!errors.includes('ERR_LOCK_LOST'), 'no worker lost its lock');
    const held = probe.lock(`${name}-probe`);
    await held.lock();

    const second = cluster.members.find((m) => !m.dead)!;
    await second.kill('SIGKILL');
    let start = performance.now();
    await assert.rejects(probe.lock(`${name}-other`).tryLock(), { code: 'ERR_ETCD_UNAVAILABLE' });
    let took = performance.now() - start;
    assert.ok(took < callTimeout + 500, `tryLock failed after ${Math.round(took)} ms`);
    start = performance.now();
    await assert.rejects(held.unlock(), { code: 'ERR_ETCD_UNAVAILABLE' });
    took = performance.now() - start;
    assert.ok(took < callTimeout + 500, `unlock failed after ${Math.round(took)} ms`);
    assert.equal(held.isLocked, false, 'the handle is released all the same');
  } finally {
    await probe.close().catch(() => {});
  }
});
