// Shared JSON state and JSONL logs from several processes: townlock's stores next to the usual Node
// recipes, side by side in one run: throughput, and updates lost (lowdb and conf take no cross-process
// lock at all). Env: BENCH_PROCS (4), BENCH_OPS (100 per process), BENCH_ROUNDS (3, median reported).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { join } from 'node:path';
import { fmt, now, percentile, printTable, scratch } from './_util.mjs';

const P = Number(process.env.BENCH_PROCS ?? 4);
const M = Number(process.env.BENCH_OPS ?? 100);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const child = new URL('./_store-child.mjs', import.meta.url).pathname;

/** P processes of `impl`; returns ops/s and how many of the P*M operations are missing from the file. */
async function run(impl, kind) {
  const dir = scratch('store');
  const file = join(dir, kind === 'json' ? 'state.json' : 'events.jsonl');
  if (kind === 'json' && !impl.startsWith('conf')) fs.writeFileSync(file, JSON.stringify({ counter: 0 }));
  if (kind === 'jsonl') fs.writeFileSync(file, '');
  const start = now() + 500 + 50 * P;
  const results = await Promise.all(
    Array.from(
      { length: P },
      () =>
        new Promise((resolve, reject) => {
          const p = spawn(process.execPath, [child, impl, file, String(M), String(start)]);
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
  const finishes = results.map((r) => r.finish);
  const errors = results.reduce((a, r) => a + r.errors, 0);
  let done;
  if (kind === 'json') {
    const path = impl.startsWith('conf') ? join(dir, 'conf-state.json') : file;
    done = JSON.parse(fs.readFileSync(path, 'utf8')).counter;
  } else {
    done = fs
      .readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => {
        try {
          return l !== '' && JSON.parse(l).pid > 0;
        } catch {
          return false;
        }
      }).length;
  }
  fs.rmSync(dir, { recursive: true, force: true });
  return { rate: (P * M * 1000) / (Math.max(...finishes) - start), lost: P * M - done, errors };
}

for (const [kind, impls] of [
  ['json', ['townlock JsonFile', 'proper-lockfile + write-file-atomic', 'lowdb (no lock)', 'conf (no lock)']],
  [
    'jsonl',
    [
      'townlock JsonlLog',
      'townlock JsonlLog (fsync off)',
      'fs.appendFile (no lock, no fsync)',
      'proper-lockfile + fs.appendFile (no fsync)',
    ],
  ],
]) {
  const samples = new Map(impls.map((i) => [i, []]));
  for (let r = 0; r < ROUNDS; r++)
    for (const impl of r % 2 ? [...impls].reverse() : impls) samples.get(impl).push(await run(impl, kind));
  const base = percentile(
    samples.get(impls[0]).map((s) => s.rate),
    50,
  );
  console.log(
    `\n### ${kind === 'json' ? 'JSON read-modify-write' : 'JSONL append'}: ${P} processes x ${M} (median of ${ROUNDS})\n`,
  );
  printTable(
    ['implementation', 'ops/s', `townlock / this`, 'lost (all rounds)', 'errors (all rounds)'],
    impls.map((impl) => {
      const rate = percentile(
        samples.get(impl).map((s) => s.rate),
        50,
      );
      const total = (key) => String(samples.get(impl).reduce((a, s) => a + s[key], 0));
      return [impl, fmt(rate, 0), `${fmt(base / rate)}x`, total('lost'), total('errors')];
    }),
  );
}
