// Cross-process contention (issue: fairness under contention). N processes x M read-modify-writes of one
// JSON file (~30 KB), each with fsync + rename, under an exclusive lock:
//   sketch         blocks in flock(LOCK_EX) on a koffi worker thread (the kernel's own queue), and does
//                  the I/O synchronously
//   townlock       withWriteLock + writeFileAtomic (non-blocking attempts, nothing parked in the kernel;
//                  the fsyncs on libuv's threadpool)
//   townlock-sync  withWriteLock + writeFileAtomicSync (the sketch's synchronous I/O: the locks alone)
// All run in the same invocation, in a rotating order, BENCH_ROUNDS times for each N in BENCH_PROCS.
// Env: BENCH_PROCS (default "4,8"), BENCH_UPDATES (200), BENCH_ROUNDS (3).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { join } from 'node:path';
import { fmt, now, percentile, printTable, scratch } from './_util.mjs';

const PROCS = (process.env.BENCH_PROCS ?? '4,8').split(',').map(Number);
const M = Number(process.env.BENCH_UPDATES ?? 200);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const dir = scratch('contention');
const child = new URL('./_contention-child.mjs', import.meta.url).pathname;

/** One run: n processes of impl; returns throughput, wait percentiles, finish spread, lost updates. */
async function run(impl, n, seq) {
  const file = join(dir, `${impl}-${n}-${seq}.json`);
  const items = Array.from({ length: 300 }, (_, i) => ({ by: 0, at: i, note: 'x'.repeat(64) }));
  fs.writeFileSync(file, JSON.stringify({ counter: 0, items }));
  const startAt = now() + 400 + 60 * n; // every process loaded and waiting before the start
  const results = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise((resolve, reject) => {
          const p = spawn(process.execPath, [child, impl, file, String(M), String(startAt)]);
          let out = '';
          p.stdout.on('data', (d) => {
            out += d;
          });
          p.stderr.pipe(process.stderr);
          p.on('exit', (code) =>
            code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`${impl} exited ${code}`)),
          );
        }),
    ),
  );
  const waits = results.flatMap((r) => r.waits);
  const start = Math.min(...results.map((r) => r.start));
  const finishes = results.map((r) => r.finish);
  const counter = JSON.parse(fs.readFileSync(file, 'utf8')).counter;
  return {
    rate: (n * M * 1000) / (Math.max(...finishes) - start),
    p50: percentile(waits, 50),
    p99: percentile(waits, 99),
    max: Math.max(...waits),
    spread: Math.max(...finishes) - Math.min(...finishes),
    lost: n * M - counter,
    cpu: results.reduce((a, r) => a + r.cpu, 0) / (n * M),
  };
}

const median = (rows, key) =>
  percentile(
    rows.map((r) => r[key]),
    50,
  );
const IMPLS = ['sketch', 'townlock', 'townlock-sync'];
const LABELS = {
  sketch: 'blocking flock sketch',
  townlock: 'townlock + writeFileAtomic',
  'townlock-sync': 'townlock + writeFileAtomicSync',
};
for (const n of PROCS) {
  const samples = Object.fromEntries(IMPLS.map((impl) => [impl, []]));
  for (let r = 0; r < ROUNDS; r++) {
    const order = IMPLS.map((_, i) => IMPLS[(i + r) % IMPLS.length]);
    for (const impl of order) samples[impl].push(await run(impl, n, r));
  }
  console.log(`\n### ${n} processes x ${M} updates (median of ${ROUNDS} rounds each)\n`);
  const rows = IMPLS.map((impl) => {
    const s = samples[impl];
    return [
      LABELS[impl],
      fmt(median(s, 'rate'), 0),
      fmt(median(s, 'p50'), 1),
      fmt(median(s, 'p99'), 1),
      fmt(median(s, 'max'), 1),
      fmt(median(s, 'spread'), 0),
      String(s.reduce((a, x) => a + x.lost, 0)),
      fmt(median(s, 'cpu'), 2),
    ];
  });
  printTable(
    ['', 'updates/s', 'p50 wait ms', 'p99 ms', 'max ms', 'first→last finish ms', 'lost', 'CPU ms/update'],
    rows,
  );
  const a = samples.sketch;
  for (const impl of ['townlock', 'townlock-sync']) {
    const b = samples[impl];
    console.log(
      `\nratios ${LABELS[impl]} / sketch: throughput ${fmt(median(b, 'rate') / median(a, 'rate'))}x, p99 ${fmt(median(b, 'p99') / median(a, 'p99'))}x, max ${fmt(median(b, 'max') / median(a, 'max'))}x, spread ${fmt(median(b, 'spread') / median(a, 'spread'))}x`,
    );
  }
}
fs.rmSync(dir, { recursive: true, force: true });
