/**
 * EtcdMachineRegistry across real processes on one throwaway etcd: adds of distinct machines from 4
 * processes end exact (each applied once), update() increments from 4 processes end exact
 * (serializable), and a control run with the transactions' compares removed loses increments. Fixtures
 * import the build (dist/).
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, afterEach, test } from 'node:test';
import { type EtcdClient, loadClient, prefixEnd } from '../../src/etcd/_client.js';
import { type Child, DIST, mutatedDist, reapAll, start, tempDir } from '../multiprocess/helpers.js';
import { useEtcd } from './etcd-server.js';

const N = Number(process.env.TOWNLOCK_ETCD_REG_ADDS ?? 30);
const M = Number(process.env.TOWNLOCK_ETCD_REG_UPDATES ?? 25);
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
let seq = 0;
const fresh = () => `mp-${++seq}`;

/** Runs 4 worker processes (started together) of `mode` on registry `name`; returns their callback runs. */
async function workers(name: string, mode: 'add' | 'count', count: number, dist = DIST): Promise<number> {
  const kids: Child[] = Array.from({ length: 4 }, (_, i) =>
    start(
      process.execPath,
      [
        join(import.meta.dirname, 'fixtures', 'registry-worker.mjs'),
        etcd.cluster.endpoints().join(','),
        name,
        mode,
        String(count),
        `w${i}`,
      ],
      { TOWNLOCK_DIST: dist },
    ),
  );
  for (const k of kids) await k.waitFor('ready');
  for (const k of kids) k.send('go');
  let runs = 0;
  for (const k of kids) {
    runs += Number((await k.waitFor(/^done /, 60_000)).split(' ')[1]);
    assert.equal(await k.exited(), 0, k.stderr());
  }
  return runs;
}

/** The machine keys of registry `name`. */
async function machines(name: string) {
  const root = `mp/registry/${name}/machines/`;
  return (await raw.range({ key: root, rangeEnd: prefixEnd(root) })).kvs.map((kv) => ({
    ...kv,
    name: kv.key.slice(root.length),
  }));
}

/** The counter the "count" workers increment. */
async function counter(name: string): Promise<number> {
  const kv = (await machines(name)).find((m) => m.name === 'counter');
  return kv ? Number(JSON.parse(kv.value).town_path) : 0;
}

test(`4 processes x ${N} adds of distinct machines end exact, each applied once`, {
  timeout: 60_000,
}, async (t) => {
  if (!etcd.ready(t)) return;
  const name = fresh();
  await workers(name, 'add', N);
  const kvs = await machines(name);
  const expected = Array.from({ length: 4 }, (_, i) =>
    Array.from({ length: N }, (_, k) => `w${i}-${k}`),
  ).flat();
  assert.deepEqual(kvs.map((kv) => kv.name).sort(), expected.sort());
  assert.deepEqual(
    kvs.filter((kv) => kv.version !== 1n).map((kv) => kv.name),
    [],
    'every machine was put exactly once',
  );
});

test(`4 processes x ${M} update() increments end exact (serializable)`, { timeout: 60_000 }, async (t) => {
  if (!etcd.ready(t)) return;
  const name = fresh();
  const runs = await workers(name, 'count', M);
  t.diagnostic(`${4 * M} increments took ${runs} callback runs (the rest were re-runs after conflicts)`);
  assert.equal(await counter(name), 4 * M);
});

test('control: without the transactions’ compares, the same increments come out short', {
  timeout: 60_000,
}, async (t) => {
  if (!etcd.ready(t)) return;
  const dist = mutatedDist(
    tmp.dir,
    'dist-no-compare',
    'etcd/_registry-document.js',
    /compare: plan\.compare/g,
    'compare: []',
  );
  let short = 0;
  for (let round = 0; round < 5 && short === 0; round++) {
    const name = fresh();
    await workers(name, 'count', M, dist);
    short = 4 * M - (await counter(name));
  }
  t.diagnostic(`control run: ${short} increments lost`);
  assert.ok(short > 0, 'the control run should have lost increments');
});
