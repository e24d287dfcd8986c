/**
 * EtcdMachineRegistry on a 3-member loopback cluster while members die: 3 processes add machines;
 * after `kill -9` of the leader every one goes on within 3 s, no acknowledged add is lost and none is
 * applied twice; with a second member gone, calls fail with ERR_ETCD_UNAVAILABLE within callTimeout
 * instead of hanging.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { afterEach, test } from 'node:test';
import { loadClient, prefixEnd } from '../../src/etcd/_client.js';
import { Etcd } from '../../src/etcd/index.js';
import { type Child, DIST, reapAll, start } from '../multiprocess/helpers.js';
import { useEtcd } from './etcd-server.js';

const etcd = useEtcd({ members: 3 });
afterEach(reapAll);

/** Absolute ms, comparable with the fixtures' timestamps. */
const now = () => performance.timeOrigin + performance.now();

/**
 * The first add worker `w` (id `id`) began after `since` and had acknowledged: its number and when it
 * was acknowledged (absolute ms). An add answered just after the kill may have been committed before.
 */
async function firstOkAfter(w: Child, id: string, since: number, deadlineMs: number) {
  for (let k = 0; ; k++) {
    const tried = Number((await w.waitFor(new RegExp(`^try ${id}-${k} `), deadlineMs)).split(' ')[2]);
    const [word, , ...rest] = (await w.waitFor(new RegExp(`^(ok|err) ${id}-${k} `), deadlineMs)).split(' ');
    if (word === 'ok' && tried > since) return { k, at: Number(rest.at(-1)) };
  }
}

test('kill -9 the leader: adds from 3 processes resume within 3 s, none lost or applied twice; kill a second member: ERR_ETCD_UNAVAILABLE within callTimeout', {
  timeout: 60_000,
}, async (t) => {
  if (!etcd.ready(t)) return;
  const cluster = etcd.cluster;
  const endpoints = cluster.endpoints();
  const name = `cluster-${process.pid}`;
  const fixture = join(import.meta.dirname, 'fixtures', 'registry-adder.mjs');
  const ids = ['a', 'b', 'c'];
  const workers = ids.map((id) =>
    start(process.execPath, [fixture, endpoints.join(','), name, id], { TOWNLOCK_DIST: DIST }),
  );
  const callTimeout = 1000;
  const probe = await Etcd.connect({ endpoints, prefix: 'cluster/', callTimeout });
  try {
    const oks = (w: Child) => w.lines.filter((l) => l.startsWith('ok '));
    for (const w of workers) await w.waitFor(/^ok \S+-2 /, 15_000); // every worker has added a few
    const leader = await cluster.leader();
    const killedAt = now();
    await leader.kill('SIGKILL');
    const resumed = await Promise.all(workers.map((w, i) => firstOkAfter(w, ids[i]!, killedAt, 10_000)));
    const after = resumed.map((r) => Math.round(r.at - killedAt));
    t.diagnostic(
      `after the leader died, each worker's first acknowledged add came after ${after.join(', ')} ms`,
    );
    assert.ok(Math.max(...after) < 3000, `every worker went on within ${Math.max(...after)} ms`);
    // A few more adds each on the new leader, then a clean stop.
    await Promise.all(
      workers.map((w, i) => w.waitFor(new RegExp(`^(ok|err) ${ids[i]}-${resumed[i]!.k + 1} `), 10_000)),
    );
    for (const w of workers) w.send('stop');
    for (const w of workers) await w.waitFor('stopped', 10_000);

    const acked = new Set(workers.flatMap((w) => oks(w).map((l) => l.split(' ')[1]!)));
    const errors = workers.flatMap((w) => w.lines.filter((l) => l.startsWith('err ')));
    const unknown = new Set(errors.map((l) => l.split(' ')[1]!));
    t.diagnostic(`${acked.size} adds acknowledged; failed around the election: ${JSON.stringify(errors)}`);
    const raw = await loadClient(cluster.endpoints(), 2000);
    try {
      const root = `cluster/registry/${name}/machines/`;
      const kvs = (await raw.range({ key: root, rangeEnd: prefixEnd(root) })).kvs;
      const stored = new Map(kvs.map((kv) => [kv.key.slice(root.length), kv.version]));
      assert.deepEqual(
        [...acked].filter((m) => !stored.has(m)),
        [],
        'no acknowledged add is lost',
      );
      assert.deepEqual(
        [...stored].filter(([, version]) => version !== 1n).map(([m]) => m),
        [],
        'none was applied twice',
      );
      assert.deepEqual(
        [...stored.keys()].filter((m) => !acked.has(m) && !unknown.has(m)),
        [],
        'no phantom adds',
      );
    } finally {
      raw.close();
    }

    const reg = await probe.registry(name);
    const second = cluster.members.find((m) => !m.dead)!;
    await second.kill('SIGKILL');
    let started = performance.now();
    await assert.rejects(reg.add({ name: 'after-quorum', type: 'local' }), { code: 'ERR_ETCD_UNAVAILABLE' });
    let took = performance.now() - started;
    assert.ok(took < callTimeout + 500, `add failed after ${Math.round(took)} ms`);
    started = performance.now();
    await assert.rejects(reg.reload(), { code: 'ERR_ETCD_UNAVAILABLE' });
    took = performance.now() - started;
    assert.ok(took < callTimeout + 500, `reload failed after ${Math.round(took)} ms`);
    assert.equal(reg.has('after-quorum'), false);
  } finally {
    await probe.close().catch(() => {});
  }
});
