/**
 * The registry under real concurrency: several processes, readers during writes, kill -9 at random
 * moments. Includes the six cases of the Go design (concurrent add, read/write, remove, multi-process,
 * atomic write, lock clean-up) and a control run without the lock that must lose updates.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, afterEach, describe, test } from 'node:test';
import { cleanStaleLocks } from '../../src/filelock/index.js';
import { MachineRegistry } from '../../src/registry/index.js';
import { type Child, DIST, fixture, mutatedDist, reapAll, tempDir } from './helpers.js';

const tmp = tempDir('townlock-reg-');
after(tmp.remove);
afterEach(reapAll);
let seq = 0;
const freshPath = () => join(tmp.dir, `reg${++seq}`, 'machines.json');

/** The names writer `id` leaves after its first `ops` operations (see fixtures/registry-writer.mjs). */
function expectedNames(id: string, ops: number): string[] {
  const names = new Set<string>();
  for (let k = 0; k < ops; k++) {
    if (k % 3 === 2) names.delete(`${id}-${k - 1}`);
    else names.add(`${id}-${k}`);
  }
  return [...names];
}

/** Runs `n` writer processes of `m` operations each against `path`; returns how many failed. */
async function runWriters(
  path: string,
  n: number,
  m: number,
  dist = DIST,
  mustSucceed = true,
): Promise<number> {
  const kids = Array.from({ length: n }, (_, i) =>
    fixture('registry-writer.mjs', [path, `w${i}`, String(m)], { TOWNLOCK_DIST: dist }),
  );
  let failed = 0;
  for (const k of kids) {
    const code = await k.exited(120_000);
    if (mustSucceed) assert.equal(code, 0, k.stderr());
    if (code !== 0) failed++;
  }
  return failed;
}

const N = Number(process.env.TOWNLOCK_REG_PROCS ?? 4);
const M = Number(process.env.TOWNLOCK_REG_OPS ?? 60);

describe('multi-process registry', () => {
  test(`${N} processes x ${M} mixed adds/removes end exactly at the expected set`, async () => {
    const path = freshPath();
    await runWriters(path, N, M);
    const reg = await MachineRegistry.open(path);
    const expected = [
      'local',
      ...Array.from({ length: N }, (_, i) => expectedNames(`w${i}`, M)).flat(),
    ].sort();
    assert.deepEqual(
      reg.list().map((m) => m.name),
      expected,
    );
    // Atomic write: nothing but the file (and the lock directory) is left in the directory.
    assert.deepEqual(readdirSync(dirname(path)).sort(), ['.gastown', 'machines.json']);
  });

  test('control: the same run without the file lock loses updates', async (t) => {
    const dist = mutatedDist(
      tmp.dir,
      'dist-no-lock',
      'store/_target-lock.js',
      /await lock\.withLock\(/,
      'await ((fn) => fn())(',
    );
    const path = freshPath();
    // Without the lock, writers also trip over each other's temp files, so some may fail outright.
    const failed = await runWriters(path, N, M, dist, false);
    const reg = await MachineRegistry.open(path);
    const expected = 1 + Array.from({ length: N }, (_, i) => expectedNames(`w${i}`, M)).flat().length;
    const lost = expected - reg.list().length;
    t.diagnostic(`without the lock: ${lost} of ${expected} machines lost, ${failed} writers failed`);
    assert.ok(lost > 0, `expected lost updates without the lock, found all ${expected}`);
  });

  test('concurrent readers never see a torn or older file while processes write', async () => {
    const path = freshPath();
    const seed = await MachineRegistry.open(path);
    await seed.add({ name: 'seed', type: 'local' });
    const readers = [fixture('registry-reader.mjs', [path]), fixture('registry-reader.mjs', [path])];
    for (const r of readers) await r.waitFor('reading');
    // Add-only writers, so the count a reader sees must never go down.
    const writers = Array.from({ length: 3 }, (_, i) => fixture('registry-writer.mjs', [path, `a${i}`, '2']));
    for (const w of writers) assert.equal(await w.exited(60_000), 0, w.stderr());
    for (const r of readers) r.send('stop');
    for (const r of readers) {
      const [, reads, , errors] = (await r.waitFor(/^reads /)).split(' ');
      assert.equal(Number(errors), 0, r.stderr());
      assert.ok(Number(reads) > 0);
    }
  });

  test('concurrent removes from several processes remove each machine exactly once', async () => {
    const path = freshPath();
    const reg = await MachineRegistry.open(path);
    await Promise.all(
      Array.from({ length: 40 }, (_, i) => reg.add({ name: `r${i}`, type: 'ssh', host: `r${i}` })),
    );
    // Each fixture removes a disjoint slice; writers w0..w3 of 3 ops touch their own names only, so
    // use the registry directly from this process as a fifth writer removing the shared ones.
    const writers = Array.from({ length: 3 }, (_, i) =>
      fixture('registry-writer.mjs', [path, `x${i}`, '30']),
    );
    await Promise.all(Array.from({ length: 40 }, (_, i) => reg.remove(`r${i}`)));
    for (const w of writers) assert.equal(await w.exited(60_000), 0, w.stderr());
    const after = await MachineRegistry.open(path);
    assert.ok(after.list().every((m) => !m.name.startsWith('r')));
    const expected = ['local', ...[0, 1, 2].flatMap((i) => expectedNames(`x${i}`, 30))].sort();
    assert.deepEqual(
      after.list().map((m) => m.name),
      expected,
    );
  });

  test('lock clean-up: the unheld registry lock file is removed and writes still work', async () => {
    const path = freshPath();
    await runWriters(path, 2, 6);
    const lockDir = join(dirname(path), '.gastown', 'locks');
    // The lock file, and the waiters' queue directory if the writers ever had to wait for each other.
    assert.deepEqual(
      readdirSync(lockDir).filter((n) => n !== 'machines.json.lock.waiters'),
      ['machines.json.lock'],
    );
    assert.equal(await cleanStaleLocks(lockDir), 1);
    assert.deepEqual(readdirSync(lockDir), []);
    await runWriters(path, 2, 3);
    const reg = await MachineRegistry.open(path);
    const expected = new Set([
      'local',
      ...['w0', 'w1'].flatMap((id) => [...expectedNames(id, 6), ...expectedNames(id, 3)]),
    ]);
    assert.deepEqual(
      reg.list().map((m) => m.name),
      [...expected].sort(),
    );
  });
});

describe('crash safety', () => {
  const KILLS = Number(process.env.TOWNLOCK_CRASH_KILLS ?? 200);

  test(`kill -9 at random moments (${KILLS} kills): no acknowledged change is lost, the file always parses`, async (t) => {
    const path = freshPath();
    let acked = 0;
    let tempsSeen = 0;
    const round = async (id: string) => {
      const kid: Child = fixture('registry-writer.mjs', [path, id, '0', 'forever']);
      await kid.waitFor('ack 0');
      // A random moment (not a synchronisation): somewhere inside the stream of writes.
      await new Promise((r) => setTimeout(r, Math.random() * 30));
      kid.proc.kill('SIGKILL');
      await kid.exited();
      const done = kid.lines.filter((l) => l.startsWith('ack ')).length;
      acked += done;
      return { id, done };
    };
    for (let r = 0; r < KILLS; r += 2) {
      const results = await Promise.all([round(`c${r}`), round(`c${r + 1}`)]);
      tempsSeen += readdirSync(dirname(path)).filter((n) => n.includes('.tmp-')).length;
      const reg = await MachineRegistry.open(path); // throws if the file does not parse
      const names = new Set(reg.list().map((m) => m.name));
      for (const { id, done } of results) {
        const mine = [...names].filter((n) => n.startsWith(`${id}-`)).sort();
        // The file holds exactly the acknowledged prefix, or that prefix plus the one in-flight operation.
        const options = [expectedNames(id, done).sort(), expectedNames(id, done + 1).sort()];
        assert.ok(
          options.some((o) => JSON.stringify(o) === JSON.stringify(mine)),
          `writer ${id}: acked ${done}, file has ${JSON.stringify(mine)}`,
        );
      }
    }
    const reg = await MachineRegistry.open(path);
    await reg.add({ name: 'final', type: 'local' });
    assert.deepEqual(
      readdirSync(dirname(path)).filter((n) => n.includes('.tmp-')),
      [],
      'the next successful write removes temp files of killed writers',
    );
    t.diagnostic(
      `${KILLS} kills, ${acked} acknowledged operations, ${tempsSeen} temp files seen between rounds`,
    );
    assert.ok(acked > KILLS, 'kills must land among writes, not before them');
    JSON.parse(readFileSync(path, 'utf8'));
  });
});
