// Start-up cost of the CLI and of importing townlock, side by side with Node's own start-up and
// util-linux flock(1): each command is spawned BENCH_REPS times (default 30), the commands interleaved
// round by round so that a noisy neighbour hits them all alike; the first BENCH_WARMUP rounds (default 3)
// are dropped. Reports the median and p90 wall time per command and ratios against `node -e 0`.
// Usage: npm run build && node bench/cli-startup.mjs
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fmt, percentile, printTable, scratch } from './_util.mjs';

const REPS = Number(process.env.BENCH_REPS ?? 30);
const WARMUP = Number(process.env.BENCH_WARMUP ?? 3);
const root = resolve(import.meta.dirname ?? new URL('.', import.meta.url).pathname, '..');
const bin = join(root, 'bin', 'townlock.js');
const dir = scratch('cli-startup');
const file = join(dir, 'state.json');
const registry = join(dir, 'machines.json');
writeFileSync(
  registry,
  JSON.stringify({
    version: 1,
    machines: {
      local: { name: 'local', type: 'local' },
      'build-01': { name: 'build-01', type: 'ssh', host: 'deploy@build-01:2222' },
      'build-02': { name: 'build-02', type: 'ssh', host: 'deploy@build-02' },
    },
  }),
);
const node = process.execPath;
const hasFlock = spawnSync('sh', ['-c', 'command -v flock']).status === 0;

const cases = [
  { name: 'node -e 0', argv: [node, '-e', '0'] },
  { name: 'townlock --version', argv: [node, bin, '--version'] },
  { name: 'townlock lock run -n F -- true', argv: [node, bin, 'lock', 'run', '-n', file, '--', 'true'] },
  { name: 'townlock machine list', argv: [node, bin, '--registry', registry, 'machine', 'list'] },
  ...(hasFlock ? [{ name: 'flock -n F true', argv: ['flock', '-n', join(dir, 'flock.lock'), 'true'] }] : []),
  {
    name: 'node -e "await import(\'koffi\')"',
    argv: [node, '--input-type=module', '-e', "await import('koffi')"],
  },
  {
    name: 'node -e "await import(\'townlock\')"',
    argv: [node, '--input-type=module', '-e', "await import('townlock')"],
  },
  {
    name: 'node -e "await import(\'townlock/filelock\')"',
    argv: [node, '--input-type=module', '-e', "await import('townlock/filelock')"],
  },
];

const samples = new Map(cases.map((c) => [c.name, []]));
for (let round = 0; round < WARMUP + REPS; round++) {
  for (const c of cases) {
    const start = performance.now();
    const r = spawnSync(c.argv[0], c.argv.slice(1), { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] });
    const ms = performance.now() - start;
    if (r.status !== 0) throw new Error(`${c.name} exited ${r.status}: ${r.stderr}`);
    if (round >= WARMUP) samples.get(c.name).push(ms);
  }
}

const median = (name) => percentile(samples.get(name), 50);
const base = median('node -e 0');
console.log(`Node ${process.version}, ${REPS} interleaved runs each after ${WARMUP} warm-up rounds\n`);
printTable(
  ['command', 'median ms', 'p90 ms', 'median / node -e 0'],
  cases.map((c) => [
    `\`${c.name}\``,
    fmt(median(c.name), 1),
    fmt(percentile(samples.get(c.name), 90), 1),
    `${fmt(median(c.name) / base)}x`,
  ]),
);

const ratio = (a, b) => median(a) / median(b);
const targets = [
  ['townlock lock run -n F -- true', ratio('townlock lock run -n F -- true', 'node -e 0'), 1.25],
  ['townlock machine list', ratio('townlock machine list', 'node -e 0'), 1.25],
  [
    "import('townlock') / import('townlock/filelock')",
    ratio('node -e "await import(\'townlock\')"', 'node -e "await import(\'townlock/filelock\')"'),
    1.5,
  ],
];
console.log('');
printTable(
  ['target', 'ratio', 'limit', 'met'],
  targets.map(([name, r, limit]) => [name, `${fmt(r)}x`, `${limit}x`, r <= limit ? 'yes' : 'no']),
);
