/**
 * The stores under real concurrency: N processes x M updates, appends, enqueues and dequeues with exact
 * results; control runs without the lock that lose updates; kill -9 at random moments during appends and
 * updates (nothing acknowledged lost, torn tails detected); a consumer killed while holding a lease.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { after, afterEach, describe, test } from 'node:test';
import { JsonFile, JsonlLog, JsonlQueue, type TornLine } from '../../src/store/index.js';
import { type Child, DIST, fixture, mutatedDist, reapAll, tempDir } from './helpers.js';

const tmp = tempDir('townlock-store-');
after(tmp.remove);
afterEach(reapAll);
let seq = 0;
const fresh = (name: string) => join(tmp.dir, `s${++seq}`, name);
const N = Number(process.env.TOWNLOCK_STORE_PROCS ?? 4);
const M = Number(process.env.TOWNLOCK_STORE_OPS ?? 50);
const KILLS = Number(process.env.TOWNLOCK_STORE_KILLS ?? 100);
const QUEUE_KILLS = Number(process.env.TOWNLOCK_QUEUE_KILLS ?? 20);

/** A copy of dist/ whose stores write without the lock (the queue's writes and the log's go through it). */
const lockless = () =>
  mutatedDist(
    tmp.dir,
    'dist-store-no-lock',
    'store/_target-lock.js',
    /await lock\.withLock\(/g,
    'await ((fn) => fn())(',
  );

/** Runs the fixture in `n` processes and waits for all of them; returns how many exited 0. */
async function all(n: number, make: (i: number) => Child): Promise<number> {
  const kids = Array.from({ length: n }, (_, i) => make(i));
  let ok = 0;
  for (const k of kids) if ((await k.exited(120_000)) === 0) ok++;
  return ok;
}

describe('JsonFile across processes', () => {
  test(`${N} processes x ${M} increments end exact`, async () => {
    const path = fresh('state.json');
    assert.equal(await all(N, () => fixture('store-json.mjs', [path, String(M)])), N);
    assert.equal(JSON.parse(readFileSync(path, 'utf8')).runs, N * M);
  });

  test('control: the same without the lock loses increments', async (t) => {
    const path = fresh('state.json');
    const dist = lockless();
    await all(N, () => fixture('store-json.mjs', [path, String(M)], { TOWNLOCK_DIST: dist }));
    const runs = JSON.parse(readFileSync(path, 'utf8')).runs;
    t.diagnostic(`without the lock: ${N * M - runs} of ${N * M} increments lost`);
    assert.ok(runs < N * M, `expected lost increments, got ${runs}`);
  });
});

describe('JsonlLog across processes', () => {
  test(`${N} processes x ${M} appends: every entry exactly once, each writer's in order`, async () => {
    const path = fresh('events.jsonl');
    assert.equal(await all(N, (i) => fixture('store-log.mjs', [path, `w${i}`, String(M)])), N);
    const log = await JsonlLog.open<{ w: string; i: number }>(path);
    const seen = new Map<string, number[]>();
    for await (const e of log.read()) seen.set(e.w, [...(seen.get(e.w) ?? []), e.i]);
    for (let w = 0; w < N; w++)
      assert.deepEqual(
        seen.get(`w${w}`),
        Array.from({ length: M }, (_, i) => i),
      );
    // O_APPEND alone keeps whole lines apart on a local file system; the lock is what isolates torn
    // tails, orders group commits and holds on NFS, so there is no lost-append control to show here.
  });
});

describe('JsonlQueue across processes', () => {
  /** Producers enqueue N x M tasks while 3 consumers dequeue; returns every task the consumers got. */
  async function run(dist = DIST): Promise<{ got: string[]; left: number }> {
    const path = fresh('tasks.jsonl');
    const consumers = Array.from({ length: 3 }, () =>
      fixture('store-queue.mjs', [path, 'consume'], { TOWNLOCK_DIST: dist }),
    );
    for (const c of consumers) await c.waitFor('ready');
    await all(N, (i) =>
      fixture('store-queue.mjs', [path, 'produce', `p${i}`, String(M)], { TOWNLOCK_DIST: dist }),
    );
    for (const c of consumers) c.send('drain');
    for (const c of consumers) assert.equal(await c.exited(120_000), 0, c.stderr());
    const got = consumers.flatMap((c) => c.lines.filter((l) => l.startsWith('got ')).map((l) => l.slice(4)));
    const left = (await JsonlQueue.open(path)).size();
    return { got, left };
  }

  test(`${N} producers x ${M} tasks, 3 consumers: every task dequeued exactly once`, async () => {
    const { got, left } = await run();
    assert.equal(left, 0);
    assert.equal(got.length, N * M);
    assert.equal(new Set(got).size, N * M, 'no task handed out twice');
  });

  test('control: without the lock tasks are lost or handed out twice', async (t) => {
    const { got, left } = await run(lockless());
    const distinct = new Set(got).size;
    t.diagnostic(
      `without the lock: ${got.length} handed out (${got.length - distinct} twice), ${left} left, ${N * M - distinct - left} lost`,
    );
    assert.ok(got.length !== distinct || distinct + left < N * M, 'the control run should misbehave');
  });

  test('a consumer killed while holding a lease: its task is handed out again after the deadline', async () => {
    const path = fresh('tasks.jsonl');
    const q = await JsonlQueue.open<{ job: number }>(path);
    await q.enqueueMany([{ job: 1 }, { job: 2 }]);
    const victim = fixture('store-queue.mjs', [path, 'lease', '300']);
    assert.equal(await victim.waitFor(/^leased /), 'leased {"job":1} 1');
    victim.proc.kill('SIGKILL');
    await victim.exited();
    assert.deepEqual(await q.dequeue(), { job: 2 }, 'the leased task is invisible before its deadline');
    const heir = fixture('store-queue.mjs', [path, 'lease-ack', '60000']);
    // Leasing before the deadline finds nothing; the heir retries until it gets the task.
    let line: string | undefined;
    for (let i = 0; i < 50 && !line?.includes('job'); i++) {
      const h = i === 0 ? heir : fixture('store-queue.mjs', [path, 'lease-ack', '60000']);
      line = await h.waitFor(/^leased /);
      if (line.includes('job')) await h.waitFor('acked');
      else await new Promise((r) => setTimeout(r, 20)); // the deadline is time-based
    }
    assert.equal(line, 'leased {"job":1} 2');
    assert.equal(q.size() + q.leased(), 0);
  });
});

describe('crash safety', () => {
  test(`kill -9 during appends and updates (${KILLS} kills): nothing acknowledged lost, torn tails detected`, async (t) => {
    const logPath = fresh('events.jsonl');
    const jsonPath = fresh('state.json');
    const acked = new Map<string, number>();
    let maxRuns = 0;
    const kill = async (kid: Child) => {
      await kid.waitFor(/^ack /);
      await new Promise((r) => setTimeout(r, Math.random() * 25)); // a random moment, not a handshake
      kid.proc.kill('SIGKILL');
      await kid.exited();
      return kid.lines.filter((l) => l.startsWith('ack ')).map((l) => Number(l.slice(4)));
    };
    let tornSeen = 0;
    for (let r = 0; r < KILLS; r += 2) {
      const [appended, updated] = await Promise.all([
        kill(fixture('store-log.mjs', [logPath, `k${r}`, 'forever'])),
        kill(fixture('store-json.mjs', [jsonPath, 'forever'])),
      ]);
      acked.set(`k${r}`, appended.length);
      maxRuns = Math.max(maxRuns, ...updated);
      const runs = JSON.parse(readFileSync(jsonPath, 'utf8')).runs; // always parses
      assert.ok(runs >= maxRuns, `acknowledged runs ${maxRuns}, file has ${runs}`);
      const torn: TornLine[] = [];
      const log = await JsonlLog.open<{ w: string; i: number }>(logPath);
      const mine: number[] = [];
      for await (const e of log.read({ onTorn: (x) => torn.push(x) })) if (e.w === `k${r}`) mine.push(e.i);
      tornSeen += torn.length;
      // Every acknowledged entry is there exactly once, in order; at most the in-flight one beyond it.
      assert.deepEqual(mine.slice(0, appended.length), appended, `writer k${r}`);
      assert.ok(
        mine.length <= appended.length + 1,
        `writer k${r}: ${mine.length} entries for ${appended.length} acks`,
      );
    }
    // A power cut mid-append tears the last line (a kill rarely can: small writes are atomic): cut the
    // file inside its last entry, and the tear must be reported at that entry's offset, nothing before it
    // lost, the next append kept whole, and repair() must clear it.
    const log = await JsonlLog.open<{ w: string; i: number }>(logPath);
    const entries: { offset: number; end: number }[] = [];
    for await (const e of log.entries({ onTorn: () => {} })) entries.push(e);
    const last = entries.at(-1)!;
    truncateSync(logPath, last.offset + Math.floor((last.end - last.offset) / 2));
    const { entries: before, torn } = await log.check();
    assert.equal(before, entries.length - 1);
    assert.deepEqual(
      torn.filter((x) => x.tail).map((x) => x.offset),
      [last.offset],
    );
    await log.append({ w: 'after', i: 0 });
    const afterCut: { w: string }[] = [];
    for await (const e of log.read({ onTorn: () => {} })) afterCut.push(e);
    assert.equal(afterCut.at(-1)!.w, 'after');
    await log.repair();
    assert.deepEqual((await log.check()).torn, [], 'repair leaves no torn line');
    const state = await JsonFile.open<{ runs: number }>(jsonPath, { defaults: () => ({ runs: 0 }) });
    await state.update((d) => void d.runs++);
    t.diagnostic(
      `${KILLS} kills; ${[...acked.values()].reduce((a, b) => a + b, 0)} appends and ${maxRuns} updates acknowledged; torn lines from kills ${tornSeen}`,
    );
    assert.ok(maxRuns > KILLS / 2, 'kills must land among the updates');
  });
});

describe('queue crash safety', () => {
  /**
   * How many copies of each task the two files hold, read as the queue reads them (jsonl-queue.ts): the
   * queue file's lines, plus the leases file's leases; while the leases file carries a `pending` move,
   * its `pending.leases` count instead once the queue file no longer has the bytes it was moved from.
   */
  function copies(path: string): Map<string, number> {
    const count = new Map<string, number>();
    const add = (line: string) => {
      const key = JSON.stringify(JSON.parse(line));
      count.set(key, (count.get(key) ?? 0) + 1);
    };
    const queue = existsSync(path) ? readFileSync(path) : Buffer.alloc(0);
    for (const line of queue.toString('utf8').split('\n')) if (line.trim() !== '') add(line);
    const leasesPath = `${path}.leases.json`;
    if (!existsSync(leasesPath)) return count;
    const file = JSON.parse(readFileSync(leasesPath, 'utf8')) as {
      leases: { line: string }[];
      pending?: { queue: string; leases: { line: string }[] };
    };
    const moved =
      file.pending !== undefined && createHash('sha256').update(queue).digest('hex') !== file.pending.queue;
    for (const lease of moved ? file.pending!.leases : file.leases) add(lease.line);
    return count;
  }

  test(`kill -9 while consumers lease, re-lease expired leases, ack and release (${QUEUE_KILLS} rounds): every task stored exactly once`, async (t) => {
    const path = fresh('tasks.jsonl');
    const q = await JsonlQueue.open<{ t: number }>(path);
    const acking = new Set<string>(); // acks started: such a task may be gone
    const acked = new Set<string>(); // acks acknowledged: such a task must be gone
    let next = 0;
    let leases = 0;
    for (let r = 0; r < QUEUE_KILLS; r++) {
      await q.enqueueMany(Array.from({ length: 6 }, () => ({ t: next++ })));
      // Visibility 20-60 ms: leases run out and are taken again (a re-lease) all the time.
      const kids = [0, 1].map(() => fixture('store-queue.mjs', [path, 'churn', '20', '60']));
      for (const kid of kids) await kid.waitFor(/^leased /);
      await new Promise((r) => setTimeout(r, 50 + Math.random() * 250)); // a random moment, not a handshake
      for (const kid of kids) kid.proc.kill('SIGKILL');
      for (const kid of kids) {
        await kid.exited();
        for (const line of kid.lines) {
          if (line.startsWith('acking ')) acking.add(line.slice(7));
          if (line.startsWith('acked ')) acked.add(line.slice(6));
          if (line.startsWith('leased ')) leases++;
        }
      }
      const count = copies(path);
      for (let i = 0; i < next; i++) {
        const task = JSON.stringify({ t: i });
        const n = count.get(task) ?? 0;
        assert.ok(n <= 1, `round ${r}: task ${task} is stored ${n} times`);
        if (acked.has(task)) assert.equal(n, 0, `round ${r}: task ${task} was acked but is still stored`);
        else if (!acking.has(task)) assert.equal(n, 1, `round ${r}: task ${task} was lost`);
      }
    }
    t.diagnostic(`${QUEUE_KILLS} kills; ${leases} leases taken, ${acked.size} acked of ${next} tasks`);
  });
});
