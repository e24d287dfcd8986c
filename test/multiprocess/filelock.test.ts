/**
 * Cross-process behaviour of filelock with real child processes: exclusion, shared overlap, interop with
 * util-linux flock(1) and Python's fcntl.flock, crash release and the cleanStaleLocks race.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs, {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { after, afterEach, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { STARVING_MS } from '../../src/filelock/_fairness.js';
import { FileLock, lockHolders, lockPathFor, withWriteLock } from '../../src/filelock/index.js';
import {
  type Child,
  DIST,
  fixture,
  mutatedDist,
  reapAll,
  requireRoot,
  requireTool,
  start,
  tempDir,
} from './helpers.js';

const M = Number(process.env.TOWNLOCK_STRESS_M ?? 150);
const tmp = tempDir();
after(tmp.remove);
afterEach(reapAll);

let seq = 0;
/** A fresh protected-file path in the temp dir. */
const freshFile = (content?: string) => {
  const file = join(tmp.dir, `f${++seq}.txt`);
  if (content !== undefined) writeFileSync(file, content);
  return file;
};

describe('mutual exclusion', () => {
  test(`4 processes x ${M} increments end exact`, async () => {
    const file = freshFile('0');
    const kids = Array.from({ length: 4 }, () => fixture('counter.mjs', [file, String(M)]));
    for (const k of kids) assert.equal(await k.exited(60_000), 0, k.stderr());
    assert.equal(Number(readFileSync(file, 'utf8')), 4 * M);
  });

  test(`4 worker_threads x ${M} increments end exact`, async () => {
    const file = freshFile('0');
    const kid = fixture('counter.mjs', [file, String(M), 'workers:4']);
    assert.equal(await kid.exited(60_000), 0, kid.stderr());
    assert.equal(Number(readFileSync(file, 'utf8')), 4 * M);
  });
});

describe('shared locks', () => {
  test('K readers overlap, and a writer waits for all of them', async () => {
    const file = freshFile();
    const readers = Array.from({ length: 3 }, () => fixture('hold.mjs', [file, 'shared']));
    // All three report "held" before any is released: they hold the shared lock at the same time.
    for (const r of readers) await r.waitFor('held');
    const writer = fixture('hold.mjs', [file, 'exclusive']);
    await writer.waitFor('busy');
    for (const r of readers.slice(0, 2)) {
      r.send('release');
      await r.waitFor('released');
    }
    assert.equal(await new FileLock(file).tryLock(), false, 'one reader still holds');
    assert.ok(!writer.lines.includes('held'), 'writer must not hold while a reader does');
    readers[2]!.send('release');
    await readers[2]!.waitFor('released');
    await writer.waitFor('held');
    writer.send('release');
    assert.equal(await writer.exited(), 0);
  });

  test('readers wait for a writer', async () => {
    const file = freshFile();
    const writer = fixture('hold.mjs', [file, 'exclusive']);
    await writer.waitFor('held');
    const reader = fixture('hold.mjs', [file, 'shared']);
    await reader.waitFor('busy');
    writer.send('release');
    await writer.waitFor('released');
    await reader.waitFor('held');
    reader.send('release');
    assert.equal(await reader.exited(), 0);
  });
});

describe('interop with util-linux flock(1)', () => {
  test('we wait while flock(1) holds; flock -n fails while we hold; shared coexists', async (t) => {
    if (!requireTool(t, 'flock')) return;
    const file = freshFile();
    const lock = new FileLock(file, { timeout: 20_000 });
    const lockPath = lock.lockPath;
    // Create the lock file (and directory) the way we would, then let flock(1) hold it.
    await lock.lock();
    await lock.unlock();
    const holder = start('flock', ['-x', lockPath, '-c', 'echo held; read line']);
    await holder.waitFor('held');
    assert.equal(await new FileLock(file).tryLock(), false);
    const waiting = lock.lock();
    holder.send('go');
    await waiting;
    assert.equal(spawnSync('flock', ['-n', lockPath, 'true']).status, 1, 'flock -n must fail while we hold');
    assert.equal(
      spawnSync('flock', ['-s', '-n', lockPath, 'true']).status,
      1,
      'shared must fail against exclusive',
    );
    await lock.unlock();
    assert.equal(spawnSync('flock', ['-n', lockPath, 'true']).status, 0, 'free again after unlock');

    const reader = new FileLock(file, { type: 'shared' });
    await reader.lock();
    assert.equal(spawnSync('flock', ['-s', '-n', lockPath, 'true']).status, 0, 'shared with shared coexist');
    assert.equal(spawnSync('flock', ['-x', '-n', lockPath, 'true']).status, 1);
    await reader.unlock();

    const sharedHolder = start('flock', ['-s', lockPath, '-c', 'echo held; read line']);
    await sharedHolder.waitFor('held');
    assert.equal(await new FileLock(file, { type: 'shared' }).tryLock(), true);
    assert.equal(await new FileLock(file).tryLock(), false);
    const holders = await lockHolders(file);
    assert.ok(
      holders.some((h) => h.mode === 'shared' && h.command?.includes('flock')),
      JSON.stringify(holders),
    );
    sharedHolder.send('go');
    assert.equal(await sharedHolder.exited(), 0);
  });
});

describe('interop with python fcntl.flock', () => {
  const py = (lockPath: string, mode: string) =>
    start('python3', [
      '-c',
      `import fcntl,sys\nf=open(sys.argv[1],'r+')\nfcntl.flock(f,fcntl.LOCK_${mode})\nprint('held',flush=True)\nsys.stdin.readline()`,
      lockPath,
    ]);

  test('both directions, exclusive and shared', async (t) => {
    if (!requireTool(t, 'python3')) return;
    const file = freshFile();
    const lock = new FileLock(file, { timeout: 20_000 });
    await lock.lock();
    const blocked = py(lock.lockPath, 'EX | fcntl.LOCK_NB');
    assert.notEqual(await blocked.exited(), 0, 'python LOCK_NB must fail while we hold');
    await lock.unlock();

    const holder = py(lock.lockPath, 'EX');
    await holder.waitFor('held');
    assert.equal(await lock.tryLock(), false);
    const waiting = lock.lock();
    holder.send('go');
    await waiting;
    await lock.unlock();

    const reader = py(lock.lockPath, 'SH');
    await reader.waitFor('held');
    const shared = new FileLock(file, { type: 'shared' });
    assert.equal(await shared.tryLock(), true);
    await shared.unlock();
    reader.send('go');
    assert.equal(await reader.exited(), 0);
  });
});

describe('crash release', () => {
  test('kill -9 of the holder releases the lock to a waiter', async () => {
    const file = freshFile();
    const holder = fixture('hold.mjs', [file]);
    await holder.waitFor('held');
    const [info] = await lockHolders(file);
    assert.equal(info?.pid, holder.proc.pid);
    assert.equal(info?.mode, 'exclusive');
    assert.match(info?.command ?? '', /hold\.mjs/);
    assert.ok(Date.parse(info?.since ?? '') <= Date.now(), 'since comes from the holder info line');
    const lock = new FileLock(file, { timeout: 10_000 });
    assert.equal(await lock.tryLock(), false);
    await assert.rejects(new FileLock(file, { timeout: 20 }).lock(), {
      message: new RegExp(`held by pid ${holder.proc.pid}`),
    });
    const waiting = lock.lock();
    holder.proc.kill('SIGKILL');
    await waiting;
    assert.ok(lock.isLocked);
    await lock.unlock();
  });
});

describe('process lifecycle', () => {
  test('a process that locked, timed out and aborted exits on its own with no leftover handles', async () => {
    const file = freshFile();
    const heldElsewhere = freshFile();
    const other = fixture('hold.mjs', [heldElsewhere]);
    await other.waitFor('held');
    const kid = fixture('lifecycle.mjs', [file, heldElsewhere]);
    assert.equal(await kid.exited(15_000), 0, kid.stderr());
    assert.deepEqual(kid.lines.filter(Boolean), ['resources []']);
  });
});

describe('cleanStaleLocks race', () => {
  // Contenders hold the lock while a separate process deletes unheld lock files in a tight loop. With the
  // inode check (acquirers re-check that the path names the inode they locked) no two contenders ever hold
  // at once. The control run repeats this with that check patched out of a copy of dist/ and must see
  // violations: this is what shows the test can fail.
  const run = async (dist: string, iterations: number) => {
    const file = freshFile('0');
    const lockDir = join(tmp.dir, '.gastown', 'locks');
    // Only townlock processes use these lock files, so the cleaner may skip its open-file checks and
    // delete as often as it can: the acquirers' inode check alone must keep exclusion.
    const cleaner = fixture('cleaner.mjs', [lockDir, 'townlock-only'], { TOWNLOCK_DIST: dist });
    await cleaner.waitFor('cleaning');
    const kids = Array.from({ length: 3 }, () =>
      fixture('contend.mjs', [file, String(iterations)], { TOWNLOCK_DIST: dist }),
    );
    let violations = 0;
    for (const k of kids) {
      const line = await k.waitFor(/^violations /, 60_000);
      violations += Number(line.split(' ')[1]);
      assert.equal(await k.exited(), 0, k.stderr());
    }
    cleaner.send('stop');
    const removed = Number((await cleaner.waitFor(/^removed /)).split(' ')[1]);
    return { violations, count: Number(readFileSync(file, 'utf8')), removed };
  };

  test('never two holders while a cleaner deletes lock files', async (t) => {
    const n = Number(process.env.TOWNLOCK_CLEAN_ITER ?? 300);
    const { violations, count, removed } = await run(DIST, n);
    t.diagnostic(`cleaner removed ${removed} lock files while contenders ran`);
    assert.equal(violations, 0);
    assert.equal(count, 3 * n);
    assert.ok(removed > 0, 'the cleaner must actually have deleted lock files for the test to mean anything');
  });

  test('control: without the inode check the same test sees two holders', async (t) => {
    const mutated = mutatedDist(
      tmp.dir,
      'dist-no-inode-check',
      'filelock/_lock-file.js',
      /export function isCurrent\(held, lockPath\) \{/,
      '$&\n    return true;',
    );
    let violations = 0;
    let lost = 0;
    for (let round = 0; round < 10 && violations + lost === 0; round++) {
      const r = await run(mutated, 300);
      violations += r.violations;
      lost += 3 * 300 - r.count;
    }
    t.diagnostic(`control run: ${violations} overlapping holds, ${lost} lost increments`);
    assert.ok(violations + lost > 0, 'the control run should have caught two holders');
  });
});

describe('cleanStaleLocks beside flock(1), which does not re-check the inode', () => {
  // Two flock(1) loops and a townlock contender share one lock file while a cleaner with its default
  // open-file checks deletes unused lock files in a tight loop. Every holder creates one marker file
  // exclusively; finding it already there means two holders at once. The control run patches the
  // open-file checks out of a copy of dist/ (the cleaner of before) and must catch overlaps.
  const run = async (dist: string, n: number) => {
    const file = freshFile('0');
    const lockFile = lockPathFor(file);
    await withWriteLock(file, () => {}); // create the lock directory and file
    const mark = `${file}.holder`;
    const log = `${file}.overlaps`;
    writeFileSync(log, '');
    const cleaner = fixture('cleaner.mjs', [join(tmp.dir, '.gastown', 'locks')], { TOWNLOCK_DIST: dist });
    await cleaner.waitFor('cleaning');
    const script = join(DIST, '..', 'test', 'multiprocess', 'fixtures', 'flock-loop.sh');
    const loops = [0, 1].map(() => start('sh', [script, lockFile, String(n), mark, log]));
    const townlock = fixture('contend.mjs', [file, String(n)], { TOWNLOCK_DIST: dist });
    for (const l of loops) await l.waitFor('done', 120_000);
    const line = await townlock.waitFor(/^violations /, 120_000);
    assert.equal(await townlock.exited(), 0, townlock.stderr());
    cleaner.send('stop');
    const [, removed, , unlinked] = (await cleaner.waitFor(/^removed /)).split(' ').map(Number);
    const flockOverlaps = readFileSync(log, 'utf8').split('\n').filter(Boolean).length;
    return {
      overlaps: flockOverlaps + Number(line.split(' ')[1]),
      count: Number(readFileSync(file, 'utf8')),
      removed: removed!,
      unlinked: unlinked!,
    };
  };

  test('never two holders among flock(1), townlock and a cleaner', async (t) => {
    if (!requireTool(t, 'flock')) return;
    const n = Number(process.env.TOWNLOCK_MIXED_ITER ?? 300);
    // Deleting a contended file is rare by design (it is skipped while anyone has it open); rounds repeat
    // until the cleaner has deleted at least once, so the test always covers deletion under contention.
    let overlaps = 0;
    let removed = 0;
    let unlinked = 0;
    for (let round = 0; round < 6 && unlinked === 0; round++) {
      const r = await run(DIST, n);
      assert.equal(r.count, n);
      overlaps += r.overlaps;
      removed += r.removed;
      unlinked += r.unlinked;
    }
    t.diagnostic(`cleaner unlinked ${unlinked} lock files (${unlinked - removed} bridged) under contention`);
    assert.equal(overlaps, 0);
    assert.ok(
      unlinked > 0,
      'the cleaner must actually have deleted lock files for the test to mean anything',
    );
  });

  test('control: a cleaner without the open-file checks lets flock(1) overlap', async (t) => {
    if (!requireTool(t, 'flock')) return;
    const mutated = mutatedDist(
      tmp.dir,
      'dist-no-open-check',
      'filelock/clean.js',
      /const checkOpeners = !options\.assumeTownlockOnly;/,
      'const checkOpeners = false;',
    );
    let overlaps = 0;
    for (let round = 0; round < 8 && overlaps === 0; round++) overlaps += (await run(mutated, 300)).overlaps;
    t.diagnostic(`control run: ${overlaps} overlapping holds`);
    assert.ok(overlaps > 0, 'the control run should have caught two holders');
  });
});

describe('fair turns between processes', () => {
  /** The bells in a lock's queue (see src/filelock/_fairness.ts), oldest first. */
  const bells = (lockPath: string): string[] => {
    try {
      return readdirSync(`${lockPath}.waiters`)
        .filter((n) => n.endsWith('.bell'))
        .sort();
    } catch {
      return [];
    }
  };
  /** Waits until `n` waiters have their place in the queue (an effect only visible by looking). */
  const queued = async (lockPath: string, n: number): Promise<void> => {
    const end = Date.now() + 10_000;
    while (bells(lockPath).length < n) {
      if (Date.now() > end) throw new Error(`${n} waiters never queued: ${bells(lockPath).join(' ')}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  /**
   * Until the oldest waiter has waited STARVING_MS (its ticket is the monotonic clock when it queued): a
   * release then gives it the turn, where one that rings a waiter queued a moment ago may go on itself.
   */
  const waitedLongEnough = async (lockPath: string): Promise<void> => {
    const ticket = BigInt(bells(lockPath)[0]!.slice(0, 20));
    while (process.hrtime.bigint() - ticket < BigInt(STARVING_MS * 1e6)) {
      await new Promise((r) => setTimeout(r, 1));
    }
  };
  /** A waiter process that polls only every minute: within a test, only a ring wakes it. */
  const ringOnly = (file: string, type = 'exclusive') =>
    fixture('hold.mjs', [file, type], { HOLD_RETRY_DELAY: '60000' });

  /**
   * This process holds the lock while another process waits (queued), releases, and at once asks
   * again. Returns who got the lock next: the waiter ("waiter") or this process barging in ("me").
   */
  const nextAfterRelease = async (dist: string): Promise<string> => {
    const file = freshFile();
    const lock = new FileLock(file, { timeout: 20_000 });
    await lock.lock();
    const waiter = fixture('hold.mjs', [file], { TOWNLOCK_DIST: dist, HOLD_RETRY_DELAY: '60000' });
    await waiter.waitFor('busy');
    await queued(lock.lockPath, 1);
    await waitedLongEnough(lock.lockPath);
    await lock.unlock();
    const first = await Promise.race([
      lock.lock().then(() => 'me'),
      waiter.waitFor('held').then(() => 'waiter'),
    ]);
    if (first === 'me') await lock.unlock();
    await waiter.waitFor('held');
    waiter.send('release');
    await waiter.exited();
    if (first === 'waiter') await lock.unlock();
    return first;
  };

  test('a process that releases while another waits lets it go first', async () => {
    assert.equal(await nextAfterRelease(DIST), 'waiter');
  });

  for (const [mode, n] of [
    [0o644, 4],
    [0o664, 8],
  ] as const) {
    test(`${n} waiters get the lock in the order they queued, each woken by the release before it (lock file ${mode.toString(8)})`, async () => {
      const file = freshFile();
      const lock = new FileLock(file, { timeout: 20_000 });
      await lock.lock();
      // 664: the lock file is shared with the group, so every waiter also watches it (see _fairness.ts).
      chmodSync(lock.lockPath, mode);
      const waiters: Child[] = [];
      for (let i = 0; i < n; i++) {
        const w = ringOnly(file);
        await w.waitFor('busy');
        await queued(lock.lockPath, i + 1);
        waiters.push(w);
      }
      const order: number[] = [];
      await lock.unlock();
      for (let turn = 0; turn < n; turn++) {
        // The next holder: whichever still waiting says "held" (each holds until told to release).
        const waiting = waiters.map((_, i) => i).filter((i) => !order.includes(i));
        const next = await Promise.race(
          waiting.map((i) => waiters[i]!.waitFor('held', 10_000).then(() => i)),
        );
        order.push(next);
        waiters[next]!.send('release');
        assert.equal(await waiters[next]!.exited(), 0);
      }
      assert.deepEqual(
        order,
        waiters.map((_, i) => i),
      );
      assert.deepEqual(bells(lock.lockPath), [], 'every waiter left the queue');
    });
  }

  test('a waiter whose queue directory is removed while it makes its bell (lock clean) takes its place again', async () => {
    const file = freshFile();
    const holder = fixture('hold.mjs', [file]);
    await holder.waitFor('held');
    const lockPath = new FileLock(file).lockPath;
    const queue = `${lockPath}.waiters`;
    const open = fs.openSync;
    let staged = false;
    // The first bell this process makes (under its hidden name) is taken away with its directory before
    // it is renamed into the queue: cleanStaleLocks removing a queue directory it found empty.
    const hooked = ((path: fs.PathLike, flags?: fs.OpenMode, mode?: fs.Mode) => {
      const fd = open(path, flags as fs.OpenMode, mode);
      if (!staged && String(path).startsWith(`${queue}/`)) {
        staged = true;
        fs.unlinkSync(path);
        fs.rmdirSync(queue);
      }
      return fd;
    }) as typeof fs.openSync;
    const mutable = fs as { openSync: typeof fs.openSync };
    mutable.openSync = hooked;
    let waiting: Promise<void>;
    try {
      waiting = new FileLock(file, { timeout: 20_000, retryDelay: 60_000, maxRetryDelay: 60_000 }).lock();
      await queued(lockPath, 1);
    } finally {
      mutable.openSync = open;
    }
    assert.ok(staged);
    holder.send('release'); // rings the bell made again; polling once a minute, nothing else wakes it
    await waiting;
    assert.equal(await holder.exited(), 0);
  });

  test('a wait that times out leaves no descriptor open when it rejects', async (t) => {
    if (!existsSync('/proc/self/fd')) {
      t.skip('needs Linux /proc to list descriptors');
      return;
    }
    const file = freshFile();
    const holder = fixture('hold.mjs', [file]);
    await holder.waitFor('held');
    const lockPath = new FileLock(file).lockPath;
    const open = () =>
      readdirSync('/proc/self/fd')
        .map((fd) => {
          try {
            return readlinkSync(`/proc/self/fd/${fd}`);
          } catch {
            return '';
          }
        })
        .filter((target) => target.startsWith(lockPath));
    let atRejection: string[] | undefined;
    await new FileLock(file, { timeout: 300 }).lock().catch(() => {
      atRejection = open();
    });
    assert.deepEqual(atRejection, [], 'no lock file or bell descriptor at rejection');
    holder.send('release');
    assert.equal(await holder.exited(), 0);
  });

  test('a queue directory another user owns is not used: nothing in it is created or removed', async (t) => {
    if (!requireRoot(t, 'give a directory to nobody')) return;
    const file = freshFile();
    const lock = new FileLock(file, { timeout: 20_000 });
    await lock.lock();
    const queue = `${lock.lockPath}.waiters`;
    mkdirSync(queue);
    const planted = join(queue, '00000000000000000001-1.bell'); // unlocked: would be removed as abandoned
    writeFileSync(planted, '');
    chownSync(queue, 65534, 65534);
    const waiter = fixture('hold.mjs', [file]);
    await waiter.waitFor('busy');
    await lock.unlock();
    await waiter.waitFor('held', 10_000); // by polling (or the touch of the lock file)
    waiter.send('release');
    assert.equal(await waiter.exited(), 0);
    assert.deepEqual(readdirSync(queue), ['00000000000000000001-1.bell']);
  });

  test('a queued waiter killed with -9 is skipped: the next one is rung', async () => {
    const file = freshFile();
    const lock = new FileLock(file, { timeout: 20_000 });
    await lock.lock();
    const doomed = ringOnly(file);
    await doomed.waitFor('busy');
    await queued(lock.lockPath, 1);
    const next = ringOnly(file);
    await next.waitFor('busy');
    await queued(lock.lockPath, 2);
    doomed.proc.kill('SIGKILL');
    await doomed.exited();
    await lock.unlock(); // rings the dead bell's owner in vain, removes it, rings the next
    await next.waitFor('held', 10_000);
    next.send('release');
    assert.equal(await next.exited(), 0);
    assert.deepEqual(bells(lock.lockPath), []);
  });

  test('a waiter that gives up just after its ring passes the ring on', async () => {
    const file = freshFile();
    const mark = join(tmp.dir, `released${++seq}`);
    const holder = fixture('hold.mjs', [file], { HOLD_MARK: mark });
    await holder.waitFor('held');
    const lockPath = new FileLock(file).lockPath;
    const abort = new AbortController();
    const first = new FileLock(file, {
      timeout: 20_000,
      retryDelay: 60_000,
      maxRetryDelay: 60_000,
      signal: abort.signal,
    }).lock();
    await queued(lockPath, 1);
    const second = ringOnly(file);
    await second.waitFor('busy');
    await queued(lockPath, 2);
    holder.send('release');
    // The holder's release rings the first waiter (this process), then it writes the mark. This process
    // waits for the mark without letting its event loop turn (which would hand it the lock), then aborts
    // the wait: the ring must reach the second waiter all the same.
    const end = Date.now() + 10_000;
    while (!fs.existsSync(mark)) {
      if (Date.now() > end) throw new Error('the holder never released');
    }
    abort.abort();
    await assert.rejects(first, { code: 'ERR_LOCK_ABORTED' });
    await second.waitFor('held', 10_000);
    second.send('release');
    assert.equal(await second.exited(), 0);
  });

  test('a waiter that wins the lock in its attempt right after queueing gives it back to an older waiter', async () => {
    const file = freshFile();
    const lock = new FileLock(file, { timeout: 20_000 });
    await lock.lock();
    const older = ringOnly(file);
    await older.waitFor('busy');
    await queued(lock.lockPath, 1);
    const olderBell = join(`${lock.lockPath}.waiters`, bells(lock.lockPath)[0]!);
    // Suspended while it waits (its bell stays locked: it still waits): rung, it cannot take its turn yet.
    process.kill(older.proc.pid!, 'SIGSTOP');
    const mark = join(tmp.dir, `pause-${seq}`);
    const go = `${mark}.go`;
    const hook = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'pause-after-bell.mjs');
    const newer = fixture('hold.mjs', [file], {
      HOLD_RETRY_DELAY: '60000',
      NODE_OPTIONS: `--import ${hook}`,
      PAUSE_MARK: mark,
      PAUSE_GO: go,
    });
    try {
      await newer.waitFor('busy');
      const end = Date.now() + 10_000;
      while (!fs.existsSync(mark)) {
        if (Date.now() > end) throw new Error('the newer waiter never queued');
        await new Promise((r) => setTimeout(r, 5));
      }
      // The newer waiter has its place but has not made its attempt: the release rings the older one.
      await lock.unlock();
      const rungAt = fs.statSync(olderBell).mtimeMs;
      // File times come from a coarse clock: let it tick, so that a second ring shows as a newer mtime.
      while (Date.now() < rungAt + 30) await new Promise((r) => setTimeout(r, 5));
      writeFileSync(go, '');
      // The newer waiter's attempt finds the lock free. It must give it back and ring the older waiter.
      const outcome = await new Promise<string>((resolve, reject) => {
        newer.waitFor('held', 10_000).then(() => resolve('newer took it'), reject);
        const poll = () => {
          if (fs.statSync(olderBell).mtimeMs > rungAt) resolve('rang the older');
          else setTimeout(poll, 2);
        };
        poll();
      });
      assert.equal(outcome, 'rang the older');
      process.kill(older.proc.pid!, 'SIGCONT');
      // The older waiter takes its turn first (the newer one defers to it for up to DEFER_LIMIT_MS).
      const first = await Promise.race([
        older.waitFor('held', 10_000).then(() => 'older'),
        newer.waitFor('held', 10_000).then(() => 'newer'),
      ]);
      assert.equal(first, 'older');
      older.send('release');
      assert.equal(await older.exited(), 0);
      await newer.waitFor('held', 10_000);
      newer.send('release');
      assert.equal(await newer.exited(), 0);
    } finally {
      if (older.proc.exitCode === null && older.proc.signalCode === null)
        process.kill(older.proc.pid!, 'SIGCONT');
    }
  });

  test('a release looks for waiters after its unlock: one that queues meanwhile is not missed', async () => {
    const file = freshFile();
    const lock = new FileLock(file, { timeout: 20_000 });
    await lock.lock();
    const waiter = fixture('hold.mjs', [file], { HOLD_RETRY_DELAY: '60000', HOLD_STEP: '1' });
    await waiter.waitFor('busy'); // its single attempt failed; it waits (queues, tries again) when told
    const queue = `${lock.lockPath}.waiters`;
    const lstat = fs.lstatSync;
    let staged = false;
    // The release's look for the queue directory answers as of the moment it was asked (no queue yet),
    // but only once the waiter has queued and tried (the widest possible race): were the look before the
    // unlock, that try would fail, and the waiter, polling once a minute, would wait for a ring that
    // never comes.
    const hooked = ((path: fs.PathLike, options?: fs.StatSyncOptions) => {
      const answer = lstat(path, options as fs.StatSyncOptions);
      if (!staged && String(path) === queue) {
        staged = true;
        assert.equal(answer, undefined, 'no queue yet');
        waiter.send('wait');
        const end = Date.now() + 10_000;
        while (!fs.existsSync(queue) && Date.now() < end);
        const settle = Date.now() + 100;
        while (Date.now() < settle); // the waiter's attempt right after queueing
      }
      return answer;
    }) as typeof fs.lstatSync;
    const mutable = fs as { lstatSync: typeof fs.lstatSync };
    mutable.lstatSync = hooked;
    try {
      await lock.unlock();
    } finally {
      mutable.lstatSync = lstat;
    }
    assert.ok(staged, 'the release looked for the queue');
    await waiter.waitFor('held', 10_000);
    waiter.send('release');
    assert.equal(await waiter.exited(), 0);
  });

  test('a queue full of dead waiters: they are removed and the live one behind them is rung', async () => {
    const file = freshFile();
    const lock = new FileLock(file, { timeout: 20_000 });
    await lock.lock();
    mkdirSync(`${lock.lockPath}.waiters`);
    // Bells older than any real ticket that nobody holds: waiters killed while they waited.
    for (let i = 1; i <= 40; i++) {
      writeFileSync(`${lock.lockPath}.waiters/${String(i).padStart(20, '0')}-${i}.bell`, '');
    }
    const waiter = ringOnly(file);
    await waiter.waitFor('busy');
    await queued(lock.lockPath, 41);
    await lock.unlock();
    await waiter.waitFor('held', 10_000);
    assert.deepEqual(bells(lock.lockPath), [], 'the dead bells were removed, the live one rung');
    waiter.send('release');
    assert.equal(await waiter.exited(), 0);
  });

  test('a symlink in place of the queue directory is not followed: waiters poll, nothing outside is touched', async () => {
    const file = freshFile();
    const lock = new FileLock(file, { timeout: 20_000 });
    await lock.lock();
    const outside = join(tmp.dir, `outside${++seq}`);
    mkdirSync(outside);
    const planted = '00000000000000000001-1.bell';
    writeFileSync(join(outside, planted), 'keep');
    symlinkSync(outside, `${lock.lockPath}.waiters`);
    const waiter = fixture('hold.mjs', [file]);
    await waiter.waitFor('busy');
    await lock.unlock();
    await waiter.waitFor('held', 10_000);
    waiter.send('release');
    assert.equal(await waiter.exited(), 0);
    await lock.lock(); // and this process's own release
    await lock.unlock();
    assert.deepEqual(readdirSync(outside), [planted]);
    assert.equal(readFileSync(join(outside, planted), 'utf8'), 'keep');
  });

  test('a lock shared between users: a waiter whose bell the releaser may not unlink is woken all the same', async (t) => {
    if (!requireRoot(t, 'run a holder as nobody')) return;
    if (!requireTool(t, 'runuser')) return;
    const dir = join(tmp.dir, `shared${++seq}`);
    mkdirSync(dir);
    chmodSync(tmp.dir, 0o755);
    chmodSync(dir, 0o1777); // like /tmp: anyone may create files, only owners may remove them
    const lockFile = join(dir, 'shared.lock');
    writeFileSync(lockFile, '');
    chmodSync(lockFile, 0o666);
    const holder = start('runuser', [
      '-u',
      'nobody',
      '--',
      'env',
      `TOWNLOCK_DIST=${DIST}`,
      'HOLD_IS_LOCK_FILE=1',
      process.execPath,
      join(DIST, '..', 'test', 'multiprocess', 'fixtures', 'hold.mjs'),
      lockFile,
    ]);
    await holder.waitFor('held');
    // This process (root) waits with a bell in a queue directory root made (0775): nobody cannot unlink
    // it. Polling once a minute, only the touch of the lock file can wake it within the test.
    const guard = AbortSignal.timeout(10_000);
    const waiting = new FileLock(lockFile, {
      isLockFile: true,
      timeout: 0,
      retryDelay: 60_000,
      maxRetryDelay: 60_000,
      signal: guard,
    }).lock();
    await queued(lockFile, 1);
    holder.send('release');
    await holder.waitFor('released');
    await waiting; // ERR_LOCK_ABORTED after 10 s if nothing woke it
    assert.equal(await holder.exited(), 0);
  });

  test('a failed tryLock takes no place in the queue', async () => {
    const file = freshFile();
    const holder = fixture('hold.mjs', [file]);
    await holder.waitFor('held');
    const lock = new FileLock(file);
    assert.equal(await lock.tryLock(), false);
    assert.equal(await new FileLock(file, { timeout: -1 }).tryLock(), false);
    assert.equal(fs.existsSync(`${lock.lockPath}.waiters`), false);
    holder.send('release');
    assert.equal(await holder.exited(), 0);
  });

  test('queued readers are woken together behind a writer', async () => {
    const file = freshFile();
    const lock = new FileLock(file, { timeout: 20_000 });
    await lock.lock();
    const readers: Child[] = [];
    for (let i = 0; i < 3; i++) {
      const r = ringOnly(file, 'shared');
      await r.waitFor('busy');
      await queued(lock.lockPath, i + 1);
      readers.push(r);
    }
    await lock.unlock();
    // All three hold at once: none releases before every one said "held".
    for (const r of readers) await r.waitFor('held', 10_000);
    for (const r of readers) r.send('release');
    for (const r of readers) assert.equal(await r.exited(), 0);
  });

  test('a waiter stuck behind a waiter that never attempts, after a holder that rings nobody, still gets the lock', async (t) => {
    if (!requireTool(t, 'flock')) return;
    const file = freshFile();
    const lockPath = new FileLock(file).lockPath;
    await withWriteLock(file, () => {});
    const holder = start('flock', ['-x', lockPath, '-c', 'echo held; read line']);
    await holder.waitFor('held');
    // A bell older than any real ticket, held by a process that never locks: a waiter that is suspended.
    mkdirSync(`${lockPath}.waiters`, { recursive: true });
    const ghost = start('flock', [
      '-x',
      `${lockPath}.waiters/00000000000000000001-1.bell`,
      '-c',
      'echo queued; read line',
    ]);
    await ghost.waitFor('queued');
    const started = Date.now();
    const waiting = withWriteLock(file, () => 'got it', { timeout: 15_000, maxRetryDelay: 20 });
    await queued(lockPath, 2);
    holder.send('go'); // flock(1) releases without a ring: only polling can notice, past the ghost
    assert.equal(await waiting, 'got it');
    t.diagnostic(`waited ${Date.now() - started} ms behind the ghost`);
    ghost.send('go');
    assert.equal(await ghost.exited(), 0);
    assert.equal(await holder.exited(), 0);
  });

  test('control: without fair turns the releaser barges in again', async () => {
    const unfair = mutatedDist(
      tmp.dir,
      'dist-no-fair-turns',
      'filelock/_fairness.js',
      /export function noteRelease\(backend, target, queue, hint\) \{/,
      '$&\n    return;',
    );
    // This process must barge too: the mutated copy is what it has to lock with.
    const { FileLock: UnfairLock } = (await import(
      `${unfair}/filelock/index.js`
    )) as typeof import('../../src/filelock/index.js');
    // The waiter polls once a minute: without a ring, only its own attempt right after it queued (which
    // the check below cannot see) could take the lock before this process asks again. So a few rounds:
    // with fair turns this process never wins one (the test above); without them it wins at once.
    const winners: string[] = [];
    for (let round = 0; round < 5 && !winners.includes('me'); round++) {
      const file = freshFile();
      const lock = new UnfairLock(file, { timeout: 20_000 });
      await lock.lock();
      const waiter = fixture('hold.mjs', [file], { TOWNLOCK_DIST: unfair, HOLD_RETRY_DELAY: '60000' });
      await waiter.waitFor('busy');
      await queued(lock.lockPath, 1);
      await lock.unlock();
      const mine = lock.lock();
      const first = await Promise.race([mine.then(() => 'me'), waiter.waitFor('held').then(() => 'waiter')]);
      winners.push(first);
      if (first === 'waiter') waiter.send('release');
      await mine;
      await lock.unlock();
      waiter.proc.kill('SIGKILL'); // no ring will ever wake it
      await waiter.exited();
    }
    assert.ok(winners.includes('me'), `the releaser never barged in: ${winners.join(' ')}`);
  });

  test('a queued waiter that never takes the lock does not stall the releaser', async (t) => {
    if (!requireTool(t, 'flock')) return;
    const file = freshFile();
    const lock = new FileLock(file, { timeout: 5_000 });
    await lock.withLock(() => {}); // creates the lock file
    // A process holding a bell but never locking: a waiter that hung. The first release rings it and
    // owes it a turn (the next lock waits YIELD_MS, 100 ms); every later one finds it first again, rings
    // the next waiter too and owes nothing. Without that, 50 rounds would take 5 s.
    mkdirSync(`${lock.lockPath}.waiters`, { recursive: true });
    const ghost = start('flock', [
      '-x',
      `${lock.lockPath}.waiters/00000000000000000001-1.bell`,
      '-c',
      'echo queued; read line',
    ]);
    await ghost.waitFor('queued');
    const started = performance.now();
    for (let i = 0; i < 50; i++) {
      await lock.lock();
      await lock.unlock();
    }
    const took = performance.now() - started;
    t.diagnostic(`50 rounds behind a hung waiter: ${Math.round(took)} ms`);
    assert.ok(took < 2_500, `50 rounds took ${Math.round(took)} ms: the releaser yields to a hung waiter`);
    await new Promise((resolve) => setImmediate(resolve)); // this process's last bell goes at this turn
    assert.deepEqual(
      bells(lock.lockPath),
      ['00000000000000000001-1.bell'],
      'the hung waiter keeps its place',
    );
    ghost.send('go');
    assert.equal(await ghost.exited(), 0);
  });

  test('a waiter whose wake-up never comes (a holder that does not touch the file) still gets the lock', async (t) => {
    if (!requireTool(t, 'flock')) return;
    const file = freshFile();
    const lockPath = new FileLock(file).lockPath;
    await withWriteLock(file, () => {});
    const holder = start('flock', ['-x', lockPath, '-c', 'echo held; read line']);
    await holder.waitFor('held');
    const waiting = withWriteLock(file, () => 'got it', { timeout: 10_000, maxRetryDelay: 20 });
    holder.send('go'); // flock(1) releases without touching: only polling can notice
    assert.equal(await waiting, 'got it');
    assert.equal(await holder.exited(), 0);
  });
});
