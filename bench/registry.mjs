// Registry throughput and scale.
// 1. P processes x M adds: townlock MachineRegistry vs the same read-modify-write built from
//    proper-lockfile + write-file-atomic, counting lost updates.
// 2. 100 concurrent adds in one process: group commit vs one call at a time.
// 3. Scale: open / get / add / list at 100, 1,000 and 10,000 machines.
// Usage: node bench/registry.mjs   (BENCH_PROCS, BENCH_ADDS, BENCH_ROUNDS)
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { join } from 'node:path';
import { MachineRegistry } from '../dist/registry/index.js';
import { fmt, printTable, scratch } from './_util.mjs';

const P = Number(process.env.BENCH_PROCS ?? 4);
const M = Number(process.env.BENCH_ADDS ?? 200);
const child = new URL('./_registry-child.mjs', import.meta.url).pathname;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

/** Starts a writer; resolves `ready` when it has loaded and `done` when it finished. */
function writer(args) {
  const p = spawn(process.execPath, [child, ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  const seen = (word) =>
    new Promise((resolve, reject) => {
      const check = () => out.includes(word) && resolve();
      p.stdout.on('data', (d) => {
        out += d;
        check();
      });
      p.on('close', (code) => (code === 0 ? check() : reject(new Error(`writer exited ${code}`))));
    });
  return { ready: seen('ready'), done: seen('done'), go: () => p.stdin.end('go\n') };
}

/** P writer processes of M adds each; returns ops/s and how many machines are missing at the end. */
async function writers(impl) {
  const dir = scratch(`registry-${impl}`);
  const path = join(dir, 'machines.json');
  fs.writeFileSync(path, JSON.stringify({ version: 1, machines: {} }, null, 2));
  const kids = Array.from({ length: P }, (_, i) => writer([impl, path, String(M), `w${i}`]));
  await Promise.all(kids.map((k) => k.ready));
  const start = performance.now();
  for (const k of kids) k.go();
  await Promise.all(kids.map((k) => k.done));
  const seconds = (performance.now() - start) / 1000;
  const count = Object.keys(JSON.parse(fs.readFileSync(path, 'utf8')).machines).filter(
    (n) => n !== 'local',
  ).length;
  fs.rmSync(dir, { recursive: true, force: true });
  return { opsPerSec: (P * M) / seconds, lost: P * M - count, seconds };
}

/** The run with the median throughput of `runs`. */
const median = (runs) => [...runs].sort((a, b) => a.opsPerSec - b.opsPerSec)[Math.floor(runs.length / 2)];
const townlockRuns = [];
const properRuns = [];
for (let r = 0; r < ROUNDS; r++) {
  townlockRuns.push(await writers('townlock'));
  properRuns.push(await writers('proper-lockfile'));
}
const t = median(townlockRuns);
const p = median(properRuns);
console.log(`1. ${P} processes x ${M} adds, median of ${ROUNDS} alternating rounds (start-up not timed)\n`);
printTable(
  ['implementation', 'adds/s', 'wall s', 'lost'],
  [
    ['townlock MachineRegistry', fmt(t.opsPerSec, 0), fmt(t.seconds), String(t.lost)],
    ['proper-lockfile + write-file-atomic', fmt(p.opsPerSec, 0), fmt(p.seconds), String(p.lost)],
  ],
);
console.log(`\nthroughput ratio: ${fmt(t.opsPerSec / p.opsPerSec)}x\n`);

/** 100 adds to a fresh registry, concurrently or one after another; returns ms. */
async function inProcess(concurrent) {
  const dir = scratch('group');
  const reg = await MachineRegistry.open(join(dir, 'machines.json'));
  const add = (i) => reg.add({ name: `m${i}`, type: 'ssh', host: `h${i}` });
  const start = performance.now();
  if (concurrent) await Promise.all(Array.from({ length: 100 }, (_, i) => add(i)));
  else for (let i = 0; i < 100; i++) await add(i);
  const ms = performance.now() - start;
  if (reg.list().length !== 101) throw new Error('lost an add');
  fs.rmSync(dir, { recursive: true, force: true });
  return ms;
}
const oneByOne = await inProcess(false);
const grouped = await inProcess(true);
console.log('2. 100 adds in one process (fsync on)\n');
printTable(
  ['mode', 'total ms', 'per add ms'],
  [
    ['one at a time (await each)', fmt(oneByOne), fmt(oneByOne / 100, 3)],
    ['concurrent (group commit)', fmt(grouped), fmt(grouped / 100, 3)],
  ],
);
console.log(`\ngroup commit speed-up: ${fmt(oneByOne / grouped, 1)}x\n`);

/** Times open/get/add/list on a registry of `size` machines. */
async function scale(size) {
  const dir = scratch('scale');
  const path = join(dir, 'machines.json');
  const machines = {};
  for (let i = 0; i < size; i++) {
    machines[`m${i}`] = { name: `m${i}`, type: 'ssh', host: `u@h${i}:22`, key_path: '', town_path: '' };
  }
  fs.writeFileSync(path, JSON.stringify({ version: 1, machines }, null, 2));
  let start = performance.now();
  const reg = await MachineRegistry.open(path);
  const open = performance.now() - start;
  const gets = 10_000;
  start = performance.now();
  for (let i = 0; i < gets; i++) reg.get(`m${i % size}`);
  const get = ((performance.now() - start) * 1000) / gets;
  start = performance.now();
  for (let i = 0; i < 20; i++) await reg.add({ name: `new${i}`, type: 'ssh', host: `n${i}` });
  const add = (performance.now() - start) / 20;
  start = performance.now();
  for (let i = 0; i < 20; i++) reg.list();
  const list = (performance.now() - start) / 20;
  fs.rmSync(dir, { recursive: true, force: true });
  return [String(size), fmt(open), fmt(get), fmt(add), fmt(list)];
}
console.log('3. Scale (ms, except get in µs)\n');
printTable(
  ['machines', 'open ms', 'get µs', 'add ms', 'list ms'],
  [await scale(100), await scale(1000), await scale(10_000)],
);
