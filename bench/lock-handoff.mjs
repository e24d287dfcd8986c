// Cross-process handoff latency: how long after one process releases does a waiting process hold the
// lock? townlock vs proper-lockfile (retries every 5-100 ms), a 10 ms poll loop (the Go design) and a
// blocking flock() on a koffi worker thread (the kernel's own wake-up, the floor). Two processes pass
// the lock back and forth; each sample starts just before the holder releases and ends when the waiter
// (already waiting) holds the lock.
// Usage: node bench/lock-handoff.mjs   (BENCH_HANDOFF_SAMPLES sets the handoffs per implementation, default 300)
import { fork } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fmt, percentile, printTable, scratch } from './_util.mjs';

const SAMPLES = Number(process.env.BENCH_HANDOFF_SAMPLES ?? 300);
const child = new URL('./_handoff-child.mjs', import.meta.url).pathname;

/** Starts one side; returns a function that sends a message and awaits the reply of a given kind. */
function side(impl, file) {
  const p = fork(child, [impl, file], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const inbox = [];
  const waiters = [];
  p.on('message', (m) => (waiters.length ? waiters.shift()(m) : inbox.push(m)));
  const next = () =>
    new Promise((resolve) => (inbox.length ? resolve(inbox.shift()) : waiters.push(resolve)));
  return { send: (m) => p.send(m), next, kill: () => p.kill() };
}

/** Two processes pass the lock back and forth SAMPLES times; returns the handoff latencies (ms). */
async function run(impl) {
  const dir = scratch(`handoff-${impl}`);
  const file = join(dir, 'data.json');
  let [holder, waiter] = [side(impl, file), side(impl, file)];
  holder.send('acquire');
  await holder.next(); // waiting
  await holder.next(); // acquired
  const samples = [];
  for (let i = 0; i < SAMPLES; i++) {
    waiter.send('acquire');
    await waiter.next(); // "waiting": its first attempt has failed
    await sleep(3); // let it settle into its steady waiting state
    holder.send('release');
    const { released } = await holder.next();
    const { acquired } = await waiter.next();
    samples.push(acquired - released);
    [holder, waiter] = [waiter, holder];
  }
  holder.kill();
  waiter.kill();
  rmSync(dir, { recursive: true, force: true });
  return samples;
}

const rows = [];
for (const impl of ['blocking-flock', 'townlock', 'poll-10ms', 'proper-lockfile']) {
  const s = await run(impl);
  rows.push([
    impl,
    String(s.length),
    fmt(percentile(s, 50), 3),
    fmt(percentile(s, 90), 3),
    fmt(percentile(s, 99), 3),
  ]);
}
console.log('Cross-process handoff latency, ms from release to the waiter holding the lock (2 processes)\n');
printTable(['implementation', 'samples', 'p50 ms', 'p90 ms', 'p99 ms'], rows);
