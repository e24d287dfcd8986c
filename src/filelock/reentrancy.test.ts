/**
 * Re-entrancy is scoped to one live hold, not to a FileLock handle: nested holds taken inside a hold
 * re-enter it, siblings inside an exclusive hold take turns, and the OS lock is given back only when the
 * outer hold and every hold nested in it have ended. Each test here failed on the handle-scoped design.
 * The tests every lock shares (siblings, nesting, upgrade, timers outliving a hold) are in the Lock
 * contract (test/conformance/lock-contract.ts), run for FileLock and EtcdLock; here are the ones that
 * check the OS lock itself (with util-linux flock(1)) and the spellings of one file.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { setImmediate as yieldTurn } from 'node:timers/promises';
import { hasTool, requireTool } from '../../test/multiprocess/helpers.js';
import { scratchDir } from '../../test/scratch-dir.js';
import { FileLock, withWriteLock } from './index.js';

const dir = scratchDir('townlock-reentry-');
let seq = 0;
const fresh = () => join(dir, `r${++seq}.json`);

/** Yields to the event loop a few times: long enough for a wrongly granted lock to show itself. */
const turns = async (n = 5) => {
  for (let i = 0; i < n; i++) await yieldTurn();
};

/** Whether util-linux flock(1) can take the lock file exclusively right now. */
const flockFree = (lockPath: string) => spawnSync('flock', ['-n', lockPath, 'true']).status === 0;

/** Records enter/exit of named sections and the largest number inside at once. */
function sections() {
  const events: string[] = [];
  let inside = 0;
  let max = 0;
  const run = (name: string) => async () => {
    max = Math.max(max, ++inside);
    events.push(`${name} in`);
    await turns(3);
    events.push(`${name} out`);
    inside--;
  };
  return { events, run, max: () => max };
}

describe('the OS lock is held until every nested hold has ended', () => {
  test('a nested lock() outliving the outer hold keeps it: isLocked and flock(1) agree', async (t) => {
    if (!requireTool(t, 'flock', hasTool('flock'))) return;
    const file = fresh();
    let inner!: FileLock;
    const outer = new FileLock(file);
    await outer.withLock(async () => {
      inner = new FileLock(file);
      await inner.lock();
    });
    assert.equal(outer.isLocked, false);
    assert.equal(inner.isLocked, true);
    assert.equal(flockFree(outer.lockPath), false, 'flock -n must not get a lock a live handle holds');
    await inner.unlock();
    assert.equal(inner.isLocked, false);
    assert.equal(flockFree(outer.lockPath), true);
  });

  test('a nested request still queued when the outer hold ends is granted before the OS lock goes', async (t) => {
    if (!requireTool(t, 'flock', hasTool('flock'))) return;
    const file = fresh();
    const lockPath = new FileLock(file).lockPath;
    let releaseFirst!: () => void;
    const firstGate = new Promise<void>((resolve) => {
      releaseFirst = resolve;
    });
    let freeDuringSecond: boolean | undefined;
    let children!: Promise<unknown>;
    await withWriteLock(file, () => {
      children = Promise.all([
        withWriteLock(file, () => firstGate),
        withWriteLock(file, () => {
          freeDuringSecond = flockFree(lockPath);
        }),
      ]);
    });
    // The outer callback returned; the first child still holds and the second waits behind it.
    releaseFirst();
    await children;
    assert.equal(freeDuringSecond, false, 'the second child ran while the OS lock was free');
    assert.equal(flockFree(lockPath), true);
  });
});

describe('deep nesting', () => {
  test('30,000 nested holds end without a stack overflow and give the OS lock back', async (t) => {
    if (!requireTool(t, 'flock', hasTool('flock'))) return;
    const file = fresh();
    const depth = 30_000;
    let innermost!: () => void;
    const reached = new Promise<void>((resolve) => {
      innermost = resolve;
    });
    const done: Promise<unknown>[] = [];
    const nest = (level: number): Promise<void> =>
      withWriteLock(file, () => {
        // Each level starts the next without waiting for it and returns: the chain ends from the inside.
        if (level < depth) done.push(nest(level + 1));
        else innermost();
      });
    done.push(nest(1));
    await reached;
    await Promise.all(done);
    assert.equal(flockFree(new FileLock(file).lockPath), true);
  });
});

describe('one lock per file, however it is spelled', () => {
  test('a symlinked file, a symlinked directory and a lockDir through a symlink share one lock', async () => {
    const real = join(dir, 'real');
    mkdirSync(real);
    const data = join(real, 'machines.json');
    writeFileSync(data, '{}');
    const linkDir = join(dir, 'link-dir');
    symlinkSync(real, linkDir);
    const other = join(dir, 'other');
    mkdirSync(other);
    const linkFile = join(other, 'machines.json');
    symlinkSync('../real/machines.json', linkFile);
    const spellings = [
      data,
      join(linkDir, 'machines.json'),
      linkFile,
      join(real, '..', 'real', 'machines.json'),
    ];
    const lockPaths = new Set(spellings.map((p) => new FileLock(p).lockPath));
    assert.deepEqual([...lockPaths], [join(real, '.gastown', 'locks', 'machines.json.lock')]);
    assert.equal(
      new FileLock(data, { lockDir: join(linkDir, '.gastown', 'locks') }).lockPath,
      join(real, '.gastown', 'locks', 'machines.json.lock'),
    );
    // Nested through two spellings: re-entry, not a deadlock.
    const nested = await withWriteLock(linkFile, () =>
      withWriteLock(data, () => 'nested', { timeout: 2_000 }),
    );
    assert.equal(nested, 'nested');
    // Concurrent through different spellings: one at a time.
    const s = sections();
    await Promise.all(spellings.map((p, i) => withWriteLock(p, s.run(`s${i}`))));
    assert.equal(s.max(), 1);
  });

  test('a dangling symlink locks the file it will create', async () => {
    const target = join(dir, 'later', 'state.json');
    const link = join(dir, 'dangling.json');
    symlinkSync(target, link);
    assert.equal(new FileLock(link).lockPath, join(dir, 'later', '.gastown', 'locks', 'state.json.lock'));
  });
});
