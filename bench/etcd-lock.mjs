// etcd locks on a throwaway single-member etcd (started and stopped here, on free loopback ports):
// 1. uncontended lock + unlock in one process: townlock's EtcdLock vs etcd3's lock() vs the floor of
//    two raw calls on the same client (put with a lease + delete);
// 2. two-process handoff (ms from the holder's release to the waiter holding): townlock vs etcd's
//    server-side lock service (v3lockpb.Lock) vs etcd3's lock() retried every 10 ms.
// Anchors run side by side in the same run. Needs dist/ (npm run build) and etcd on PATH.
// Usage: node bench/etcd-lock.mjs   (BENCH_ETCD_N: lock+unlock per round, default 300;
//        BENCH_ETCD_HANDOFFS: handoffs per implementation, default 200; BENCH_ETCD_ROUNDS: default 5)
import { fork } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { Etcd } from '../dist/etcd/index.js';
import { etcd3, startEtcd } from './_etcd.mjs';
import { compare, fmt, percentile, printTable } from './_util.mjs';

const N = Number(process.env.BENCH_ETCD_N ?? 300);
const HANDOFFS = Number(process.env.BENCH_ETCD_HANDOFFS ?? 200);
const ROUNDS = Number(process.env.BENCH_ETCD_ROUNDS ?? 5);
const child = new URL('./_etcd-handoff-child.mjs', import.meta.url).pathname;

const server = await startEtcd();
try {
  await uncontended(server.endpoint);
  await handoffs(server.endpoint);
} finally {
  await server.stop();
}

/** Uncontended lock+unlock, median ms per cycle over interleaved rounds. */
async function uncontended(endpoint) {
  const etcd = await Etcd.connect({ endpoints: [endpoint] });
  const raw = new etcd3.Etcd3({ hosts: `http://${endpoint}` });
  const lease = raw.lease(10);
  const leaseId = await lease.grant();
  const lock = etcd.lock('bench-uncontended');
  const cases = [
    {
      name: 'floor: put (with lease) + delete, raw etcd3 calls',
      n: N,
      fn: async () => {
        await raw.kv.put({ key: Buffer.from('bench-floor/k'), value: Buffer.from('v'), lease: leaseId });
        await raw.kv.deleteRange({ key: Buffer.from('bench-floor/k') });
      },
    },
    {
      name: 'townlock EtcdLock lock() + unlock()',
      n: N,
      fn: async () => {
        await lock.lock();
        await lock.unlock();
      },
    },
    {
      name: 'townlock etcd.withWriteLock(name, noop)',
      n: N,
      fn: () => etcd.withWriteLock('bench-uncontended-2', () => {}),
    },
    {
      name: "etcd3 lock('name').acquire() + release() (a lease per acquire)",
      n: Math.max(1, Math.round(N / 3)),
      fn: async () => {
        const l = raw.lock('bench-etcd3-lock');
        await l.acquire();
        await l.release();
      },
    },
  ];
  const medians = await compare(cases, { rounds: ROUNDS });
  const floor = medians.get(cases[0].name);
  console.log(
    `Uncontended lock + unlock, median ms per cycle over ${ROUNDS} interleaved rounds (N = ${N})\n`,
  );
  printTable(
    ['implementation', 'ms/op', 'vs floor'],
    cases.map((c) => [c.name, fmt(medians.get(c.name) / 1000, 3), `${fmt(medians.get(c.name) / floor)}×`]),
  );
  console.log('\nTarget: townlock lock() + unlock() <= 2 ms.\n');
  await lease.revoke();
  raw.close();
  await etcd.close();
}

/** Starts one side; returns a function that sends a message and awaits the reply of a given kind. */
async function side(impl, endpoint, name) {
  const p = fork(child, [impl, endpoint, name], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const inbox = [];
  const waiters = [];
  p.on('message', (m) => (waiters.length ? waiters.shift()(m) : inbox.push(m)));
  const next = () =>
    new Promise((resolve) => (inbox.length ? resolve(inbox.shift()) : waiters.push(resolve)));
  const exited = new Promise((resolve) => p.once('exit', resolve));
  await next(); // ready
  const stop = () => {
    p.send('exit');
    return exited;
  };
  return { send: (m) => p.send(m), next, stop };
}

/** Two processes pass the lock back and forth HANDOFFS times; returns the handoff latencies (ms). */
async function run(impl, endpoint) {
  const name = `bench-handoff-${impl}`;
  let [holder, waiter] = [await side(impl, endpoint, name), await side(impl, endpoint, name)];
  holder.send('acquire');
  await holder.next(); // waiting
  await holder.next(); // acquired
  const samples = [];
  for (let i = 0; i < HANDOFFS; i++) {
    waiter.send('acquire');
    await waiter.next(); // "waiting": its acquire has started
    await sleep(5); // let it queue and settle into its waiting state
    holder.send('release');
    const { released } = await holder.next();
    const { acquired } = await waiter.next();
    samples.push(acquired - released);
    [holder, waiter] = [waiter, holder];
  }
  holder.send('release');
  await holder.next();
  await Promise.all([holder.stop(), waiter.stop()]);
  return samples;
}

async function handoffs(endpoint) {
  const rows = [];
  for (const impl of ['townlock', 'v3lock-service', 'etcd3-lock-retry-10ms']) {
    const s = await run(impl, endpoint);
    rows.push([
      impl,
      String(s.length),
      fmt(percentile(s, 50)),
      fmt(percentile(s, 90)),
      fmt(percentile(s, 99)),
    ]);
  }
  console.log('Two-process handoff, ms from the holder releasing to the waiter holding\n');
  printTable(['implementation', 'samples', 'p50 ms', 'p90 ms', 'p99 ms'], rows);
  console.log('\nTarget: townlock p50 <= 6 ms.');
}
