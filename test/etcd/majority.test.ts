/**
 * EtcdLock on a 3-member loopback cluster that loses its majority: every lock call fails with
 * ERR_ETCD_UNAVAILABLE within about one callTimeout, also the call during which the session lease is
 * declared lost (it must not add a cleanup delete and a new lease grant, a callTimeout each).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Etcd } from '../../src/etcd/index.js';
import { useEtcd } from './etcd-server.js';

const etcd = useEtcd({ members: 3 });

test('majority gone: tryLock() and lock() fail within callTimeout, before, across and after the loss of the session lease', {
  timeout: 60_000,
}, async (t) => {
  if (!etcd.ready(t)) return;
  const callTimeout = 1000;
  const s = await Etcd.connect({ endpoints: etcd.cluster.endpoints(), leaseTtl: 2, callTimeout });
  try {
    const held = s.lock(`majority-${process.pid}`);
    await held.lock();
    const leader = await etcd.cluster.leader();
    await leader.kill('SIGKILL');
    await etcd.cluster.members.find((m) => !m.dead)!.kill('SIGKILL');
    // Calls back to back until two have started after the lease was declared lost: one of them spans
    // the moment of the loss.
    const took: number[] = [];
    let afterLoss = 0;
    for (let i = 0; afterLoss < 2 && i < 20; i++) {
      if (held.lost.aborted) afterLoss++;
      const start = performance.now();
      const call = i % 2 ? s.lock(`other-${i}`, { timeout: 10_000 }).lock() : s.lock(`try-${i}`).tryLock();
      await assert.rejects(call, { code: 'ERR_ETCD_UNAVAILABLE' });
      took.push(Math.round(performance.now() - start));
    }
    t.diagnostic(`calls failed after ${JSON.stringify(took)} ms`);
    assert.equal(held.lost.aborted, true, 'the lease was lost during the outage');
    for (const ms of took) assert.ok(ms < callTimeout + 400, `a call failed after ${ms} ms`);
  } finally {
    await s.close().catch(() => {});
  }
});
