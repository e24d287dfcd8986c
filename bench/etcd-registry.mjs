// The machine registry on etcd, P processes x M adds of distinct machines: townlock's
// EtcdMachineRegistry (one key per machine; adds of different machines never conflict) against the
// whole-document CAS recipe (the registry as one JSON value updated by get -> modify ->
// txn(mod_revision == r -> put)), counting lost adds and wasted transactions. On a throwaway single
// member, then on a throwaway 3-member loopback cluster; both recipes alternate in the same run.
// Needs dist/ (npm run build) and etcd on PATH.
// Usage: node bench/etcd-registry.mjs   (BENCH_PROCS, default 4; BENCH_ADDS, default 200;
//        BENCH_ROUNDS, default 3; BENCH_MEMBERS: "1", "3" or "1,3", default "1,3")
import { spawn } from 'node:child_process';
import { etcd3, startEtcd } from './_etcd.mjs';
import { fmt, printTable } from './_util.mjs';

const P = Number(process.env.BENCH_PROCS ?? 4);
const M = Number(process.env.BENCH_ADDS ?? 200);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const MEMBERS = (process.env.BENCH_MEMBERS ?? '1,3').split(',').map(Number);
const child = new URL('./_etcd-registry-child.mjs', import.meta.url).pathname;

/** Starts a writer; resolves `ready` once connected and `done` (with its transaction count) at the end. */
function writer(args) {
  const p = spawn(process.execPath, [child, ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  const seen = (pattern) =>
    new Promise((resolve, reject) => {
      const check = () => {
        const m = pattern.exec(out);
        if (m) resolve(m);
      };
      p.stdout.on('data', (d) => {
        out += d;
        check();
      });
      p.on('close', (code) => (code === 0 ? check() : reject(new Error(`writer exited ${code}`))));
    });
  return { ready: seen(/ready\n/), done: seen(/done (\d+)\n/), go: () => p.stdin.end('go\n') };
}

/** How many distinct machines the recipe `impl` stored under registry `name`. */
async function stored(client, impl, name) {
  if (impl === 'townlock') {
    const root = `bench/registry/${name}/machines/`;
    const res = await client.kv.range({
      key: Buffer.from(root),
      range_end: Buffer.from(`${root.slice(0, -1)}0`),
      count_only: true,
    });
    return Number(res.count);
  }
  const kv = (await client.kv.range({ key: Buffer.from(`bench-cas/${name}`) })).kvs[0];
  return kv ? Object.keys(JSON.parse(kv.value.toString()).machines).length : 0;
}

let runs = 0;
/** P writers of M adds with recipe `impl`; adds/s, wall seconds, lost adds, transactions per add. */
async function writers(endpoints, client, impl) {
  const name = `r${++runs}`;
  const kids = Array.from({ length: P }, (_, i) =>
    writer([impl, endpoints.join(','), name, String(M), `w${i}`]),
  );
  await Promise.all(kids.map((k) => k.ready));
  const start = performance.now();
  for (const k of kids) k.go();
  const tries = (await Promise.all(kids.map((k) => k.done))).reduce((sum, m) => sum + Number(m[1]), 0);
  const seconds = (performance.now() - start) / 1000;
  return {
    opsPerSec: (P * M) / seconds,
    seconds,
    lost: P * M - (await stored(client, impl, name)),
    perAdd: tries / (P * M),
  };
}

/** The run with the median throughput. */
const median = (rs) => [...rs].sort((a, b) => a.opsPerSec - b.opsPerSec)[Math.floor(rs.length / 2)];

for (const members of MEMBERS) {
  const server = await startEtcd({ members });
  const client = new etcd3.Etcd3({ hosts: server.endpoints.map((e) => `http://${e}`) });
  try {
    const townlock = [];
    const cas = [];
    for (let r = 0; r < ROUNDS; r++) {
      townlock.push(await writers(server.endpoints, client, 'townlock'));
      cas.push(await writers(server.endpoints, client, 'cas'));
    }
    const t = median(townlock);
    const c = median(cas);
    const where = members === 1 ? 'one etcd member' : `${members}-member loopback cluster`;
    console.log(
      `${P} processes x ${M} adds of distinct machines, ${where}, median of ${ROUNDS} alternating rounds\n`,
    );
    printTable(
      ['recipe', 'adds/s', 'wall s', 'lost', 'txns per add'],
      [
        [
          'townlock EtcdMachineRegistry (key per machine)',
          fmt(t.opsPerSec, 0),
          fmt(t.seconds),
          String(t.lost),
          fmt(t.perAdd),
        ],
        [
          'whole-document CAS (get, txn mod_revision == r)',
          fmt(c.opsPerSec, 0),
          fmt(c.seconds),
          String(c.lost),
          fmt(c.perAdd),
        ],
      ],
    );
    console.log(`\nthroughput ratio: ${fmt(t.opsPerSec / c.opsPerSec)}x (target >= 2x, 0 lost)\n`);
  } finally {
    client.close();
    await server.stop();
  }
}
