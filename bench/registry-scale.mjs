// Registry scale: open, a read after another process changed the file, get, the first add after open and
// later ones, list, the longest event-loop block during the asynchronous calls (an event-loop monitor
// around each; a synchronous call blocks for as long as it takes) and memory, at 100, 10,000 and 100,000
// machines (BENCH_SIZES to change), and the adds per second of BENCH_WRITERS (4) processes adding
// BENCH_WRITER_ADDS (25) machines each at once, every add re-reading what the others wrote.
// Each size runs in a fresh child process, so memory figures are that registry's alone.
// Usage: node bench/registry-scale.mjs
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fmt, printTable, scratch } from './_util.mjs';

const SIZES = (process.env.BENCH_SIZES ?? '100,10000,100000').split(',').map(Number);
const WRITERS = Number(process.env.BENCH_WRITERS ?? 4);
const WRITER_ADDS = Number(process.env.BENCH_WRITER_ADDS ?? 25);

if (process.argv[2] === 'writer') {
  // One of WRITERS processes adding machines to a big registry at once: every add after another
  // process's finds the file changed and re-reads it under the lock.
  const { MachineRegistry } = await import('../dist/registry/index.js');
  const [path, count, id] = process.argv.slice(3);
  const reg = await MachineRegistry.open(path, { lockTimeout: 0 });
  await reg.add({ name: `${id}-warm`, type: 'ssh', host: 'w.example' }); // loads the lock backend
  process.stdout.write('ready\n');
  await new Promise((resolve) => process.stdin.once('data', resolve));
  process.stdin.pause();
  for (let k = 0; k < Number(count); k++)
    await reg.add({ name: `${id}-${k}`, type: 'ssh', host: 'n.example' });
  process.stdout.write('done\n');
  process.exit(0);
}

if (process.argv[2] === 'child') {
  const { MachineRegistry } = await import('../dist/registry/index.js');
  const size = Number(process.argv[3]);
  const dir = scratch('scale');
  const path = join(dir, 'machines.json');
  const machines = {};
  for (let i = 0; i < size; i++) {
    const name = `m${String(i).padStart(6, '0')}`;
    machines[name] = {
      name,
      type: 'ssh',
      host: `deploy@h${i}.example.com:22`,
      key_path: '~/.ssh/id_ed25519',
      town_path: '/srv/town',
    };
  }
  fs.writeFileSync(path, JSON.stringify({ version: 1, machines }, null, 2));
  const bytes = fs.statSync(path).size;
  global.gc?.();
  const rssBefore = process.memoryUsage().rss;
  /** Runs fn with the event-loop monitor on: its duration and the longest block seen meanwhile, in ms. */
  const monitored = async (fn) => {
    const loop = monitorEventLoopDelay({ resolution: 1 });
    loop.enable();
    const t0 = performance.now();
    const value = await fn();
    const ms = performance.now() - t0;
    await new Promise((r) => setTimeout(r, 5)); // a block at the very end is recorded too
    loop.disable();
    return { value, ms, block: loop.max / 1e6 };
  };
  const opened = await monitored(() => MachineRegistry.open(path));
  const reg = opened.value;
  const rss = process.memoryUsage().rss - rssBefore;
  // Another process adds a machine (as the Go tool would: rewrite, rename): the next read re-reads it.
  machines.foreign = { name: 'foreign', type: 'ssh', host: 'f.example.com', key_path: '', town_path: '' };
  fs.writeFileSync(`${path}.other`, JSON.stringify({ version: 1, machines }, null, 2));
  fs.renameSync(`${path}.other`, path);
  // The synchronous reads (the one after a foreign write, get, list) block for exactly as long as they
  // take: timed one call at a time.
  let t = performance.now();
  if (!reg.has('foreign')) throw new Error('the foreign write was not seen');
  const reread = performance.now() - t;
  const gets = 20_000;
  t = performance.now();
  for (let i = 0; i < gets; i++) reg.get(`m${String(i % size).padStart(6, '0')}`);
  const get = ((performance.now() - t) * 1000) / gets;
  // The first write after open encodes every entry once; later ones reuse them.
  const first = await monitored(() => reg.add({ name: 'new-first', type: 'ssh', host: 'n' }));
  const adds = [];
  let addBlock = first.block;
  for (let i = 0; i < 20; i++) {
    const one = await monitored(() => reg.add({ name: `new${i}`, type: 'ssh', host: `n${i}` }));
    adds.push(one.ms);
    addBlock = Math.max(addBlock, one.block);
  }
  adds.sort((a, b) => a - b);
  let list = 0;
  let listMax = 0;
  for (let i = 0; i < 5; i++) {
    t = performance.now();
    reg.list();
    const one = performance.now() - t;
    list += one / 5;
    listMax = Math.max(listMax, one);
  }
  // WRITERS processes x WRITER_ADDS adds at once on this registry (each re-reads what the others wrote).
  const writers = await concurrentAdds(path);
  fs.rmSync(dir, { recursive: true, force: true });
  console.log(
    JSON.stringify({
      writers,
      size,
      bytes,
      open: opened.ms,
      openBlock: opened.block,
      reread,
      get,
      firstAdd: first.ms,
      add: adds[adds.length >> 1],
      addBlock,
      list,
      listMax,
      rss,
    }),
  );
  process.exit(0);
}

/** Adds per second of WRITERS processes adding WRITER_ADDS machines each to the registry at `path`. */
async function concurrentAdds(path) {
  if (WRITERS === 0) return 0;
  const { spawn } = await import('node:child_process');
  const procs = Array.from({ length: WRITERS }, (_, i) =>
    spawn(
      process.execPath,
      [new URL(import.meta.url).pathname, 'writer', path, String(WRITER_ADDS), `w${i}`],
      {
        stdio: ['pipe', 'pipe', 'inherit'],
      },
    ),
  );
  const line = (p, text) =>
    new Promise((resolve, reject) => {
      let out = '';
      p.stdout.on('data', (d) => {
        out += d;
        if (out.includes(text)) resolve();
      });
      p.on('exit', (code) =>
        code === 0 && out.includes(text) ? resolve() : reject(new Error(`writer exited ${code}`)),
      );
    });
  await Promise.all(procs.map((p) => line(p, 'ready')));
  const t0 = performance.now();
  for (const p of procs) p.stdin.write('go\n');
  await Promise.all(procs.map((p) => line(p, 'done')));
  return (WRITERS * WRITER_ADDS * 1000) / (performance.now() - t0);
}

const rows = [];
for (const size of SIZES) {
  const r = spawnSync(
    process.execPath,
    ['--expose-gc', new URL(import.meta.url).pathname, 'child', String(size)],
    {
      encoding: 'utf8',
    },
  );
  if (r.status !== 0) throw new Error(r.stderr);
  const m = JSON.parse(r.stdout.trim().split('\n').at(-1));
  rows.push([
    m.size.toLocaleString('en'),
    `${fmt(m.bytes / 2 ** 20, 1)} MB`,
    fmt(m.open, 1),
    fmt(m.openBlock, 1),
    fmt(m.reread, 1),
    fmt(m.get, 2),
    fmt(m.firstAdd, 1),
    fmt(m.add, 1),
    fmt(m.addBlock, 1),
    fmt(m.list, 1),
    `${fmt(m.rss / 2 ** 20, 0)} MB`,
    fmt(m.writers, 0),
  ]);
}
printTable(
  [
    'machines',
    'file',
    'open ms',
    'open: longest block ms',
    'read after a foreign write ms (sync)',
    'get µs',
    'first add ms',
    'add ms (median of 20)',
    'adds: longest block ms',
    'list ms (sync)',
    'memory (RSS growth)',
    `${WRITERS} processes adding: adds/s`,
  ],
  rows,
);
