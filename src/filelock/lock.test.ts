/**
 * In-process contract of FileLock. flock locks belong to open file descriptions, so two handles in one
 * process exclude each other just as two processes do; cross-process cases are in test/multiprocess.
 */
import assert from 'node:assert/strict';
import {
  existsSync,
  linkSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { basename, join } from 'node:path';
import { afterEach, describe, test } from 'node:test';
import { setImmediate as yieldTurn } from 'node:timers/promises';
import { fixture, reapAll } from '../../test/multiprocess/helpers.js';
import { inotifyWatches, openFds, scratchDir } from '../../test/scratch-dir.js';
import {
  AlreadyLockedError,
  cleanStaleLocks,
  FileLock,
  FileLockError,
  LockAbortedError,
  LockTimeoutError,
  lockHolders,
  NotLockedError,
  withReadLock,
  withWriteLock,
} from './index.js';

const dir = scratchDir('townlock-lock-');
afterEach(reapAll);
let seq = 0;
const fresh = () => join(dir, `data${++seq}.json`);

/** Turns the event loop so idle descriptors kept for reuse are closed. */
const settle = () => new Promise((r) => setImmediate(r));

describe('lock file placement', () => {
  test('lives in .gastown/locks beside the file, created on first lock only', async () => {
    const file = fresh();
    const lock = new FileLock(file);
    assert.equal(lock.lockPath, join(dir, '.gastown', 'locks', `data${seq}.json.lock`));
    assert.equal(lock.path, file);
    assert.equal(lock.type, 'exclusive');
    assert.equal(existsSync(lock.lockPath), false);
    await lock.lock();
    assert.equal(existsSync(lock.lockPath), true);
    await lock.unlock();
    assert.equal(existsSync(lock.lockPath), true, 'lock files are kept on unlock');
  });

  test('lockDir option moves the lock file', async () => {
    const lockDir = join(dir, 'elsewhere');
    const lock = new FileLock(fresh(), { lockDir });
    assert.equal(lock.lockPath, join(lockDir, `data${seq}.json.lock`));
    await lock.withLock(() => assert.ok(existsSync(lock.lockPath)));
  });

  test('exclusive holders write one line of holder info once the event loop turns', async () => {
    const lock = new FileLock(fresh());
    await lock.withLock(async () => {
      await settle(); // the info line is written off the fast path, at the next turn of the loop
      const info = JSON.parse(readFileSync(lock.lockPath, 'utf8').split('\n')[0]!);
      assert.equal(info.pid, process.pid);
      assert.equal(typeof info.host, 'string');
      assert.equal(info.command, basename(process.argv[1]!), 'the script name only, never its arguments');
      assert.ok(Date.parse(info.since) <= Date.now());
    });
  });

  test('isLockFile locks the path itself, as flock(1) takes its FILE, and shares the lock of its file', async () => {
    const file = fresh();
    mkdirSync(join(dir, '.gastown', 'locks'), { recursive: true });
    const direct = new FileLock(join(dir, '.gastown', 'locks', `data${seq}.json.lock`), { isLockFile: true });
    assert.equal(direct.lockPath, new FileLock(file).lockPath, 'the same lock file...');
    assert.equal(direct.path, direct.lockPath);
    await direct.lock();
    assert.equal(await new FileLock(file, { timeout: -1 }).tryLock(), false, '...and the same lock');
    await direct.unlock();
    const plain = join(dir, `plain${seq}`);
    const lock = new FileLock(plain, { isLockFile: true });
    assert.equal(lock.lockPath, plain, 'no .gastown/locks, no .lock suffix');
    await lock.withLock(() => assert.ok(existsSync(plain)));
    await assert.rejects(
      new FileLock(join(dir, 'missing-dir', 'x.lock'), { isLockFile: true }).lock(),
      { code: 'ENOENT' },
      'its directory is not created: flock(1) does not either',
    );
    assert.equal(existsSync(join(dir, 'missing-dir')), false);
    assert.throws(() => new FileLock(plain, { isLockFile: true, lockDir: dir }), {
      code: 'ERR_INVALID_OPTION',
    });
    assert.throws(() => new FileLock(plain, { isLockFile: 'yes' as unknown as boolean }), {
      code: 'ERR_INVALID_OPTION',
    });
  });

  test('a lock file named directly is never written: a script, data, an empty file keep their content', async () => {
    // flock(1) users lock scripts and data files in place (flock "$0", flock data.log -c '... >> data.log'):
    // no holder line goes into a file the caller named, so nothing the locked command writes is lost.
    const script = join(dir, `script${++seq}.sh`);
    const content = '#!/bin/sh\necho important\n';
    writeFileSync(script, content);
    const empty = join(dir, `empty${seq}.log`);
    writeFileSync(empty, '');
    const pidfile = join(dir, `pid${seq}.json`);
    writeFileSync(pidfile, '{"pid": 5}\n');
    // A queue directory left beside the script (a waiter just left): a release that finds it but no
    // waiter to ring would touch a lock file of townlock's own, never one the caller named.
    mkdirSync(`${script}.waiters`);
    const old = new Date('2020-01-01T00:00:00Z');
    // ...with the hidden bell of a waiter killed while it made it (cleared once a minute old).
    const hidden = join(`${script}.waiters`, '.00000000000000000001-99999.bell');
    writeFileSync(hidden, '');
    utimesSync(hidden, old, old);
    utimesSync(script, old, old);
    for (const path of [script, empty, pidfile]) {
      await new FileLock(path, { isLockFile: true }).withLock(settle);
    }
    assert.equal(statSync(script).mtimeMs, old.getTime(), 'not touched');
    assert.equal(existsSync(`${script}.waiters`), false, 'the empty queue directory beside it is removed');
    assert.equal(readFileSync(script, 'utf8'), content);
    assert.equal(readFileSync(empty, 'utf8'), '');
    assert.equal(readFileSync(pidfile, 'utf8'), '{"pid": 5}\n');
    const held = new FileLock(script, { isLockFile: true });
    await held.lock();
    try {
      const [holder] = await lockHolders(script, { isLockFile: true });
      if (process.platform === 'linux') assert.equal(holder?.pid, process.pid, 'found through /proc/locks');
    } finally {
      await held.unlock();
    }
    assert.equal(readFileSync(script, 'utf8'), content, 'lockHolders writes no line into it either');
  });

  test('a named lock file is opened read-only, and read-write when a read-only one is refused (EBADF)', async () => {
    // flock(1) opens its FILE read-only (a script open for writing cannot be run: ETXTBSY) and reopens it
    // read-write where flock is emulated with fcntl locks, which refuse an exclusive lock on a read-only
    // descriptor with EBADF (Linux NFS). That refusal is simulated here (by the descriptor's access mode,
    // read from /proc; without /proc, for the first attempt only).
    const { loadBackend } = await import('./backend.js');
    const backend = await loadBackend();
    const accessMode = (fd: number) => {
      const info = `/proc/self/fdinfo/${fd}`;
      if (!existsSync(info)) return undefined;
      return Number.parseInt(/flags:\s*(\d+)/.exec(readFileSync(info, 'utf8'))![1]!, 8) & 3;
    };
    const file = join(dir, `nfs${++seq}.lock`);
    writeFileSync(file, 'kept\n');
    linkSync(file, `${file}.2`); // a named file may have links, also once reopened read-write
    // A queue a waiter killed while making its bell left: cleared by the release, also where a probe on a
    // read-only descriptor is refused.
    mkdirSync(`${file}.waiters`);
    const hidden = join(`${file}.waiters`, '.00000000000000000001-99999.bell');
    writeFileSync(hidden, '');
    utimesSync(hidden, new Date('2020-01-01T00:00:00Z'), new Date('2020-01-01T00:00:00Z'));
    const real = backend.tryLock;
    const modes: (number | undefined)[] = [];
    backend.tryLock = (fd, type) => {
      const mode = accessMode(fd);
      modes.push(mode);
      const refused = mode === undefined ? modes.length === 1 : mode === 0 && type === 'exclusive';
      if (refused) throw Object.assign(new Error('flock failed: EBADF'), { code: 'EBADF' });
      return real(fd, type);
    };
    try {
      await new FileLock(file, { isLockFile: true }).withLock(() => {
        assert.equal(modes.length, 2, 'tried again after EBADF');
      });
      // The read-write descriptor is kept for the next lock of the same file in this turn.
      await new FileLock(file, { isLockFile: true }).withLock(() => {});
    } finally {
      backend.tryLock = real;
    }
    if (modes[0] !== undefined) {
      // The first lock: O_RDONLY (refused), O_RDWR; its release's probe of the dead hidden bell: O_RDWR;
      // the second lock: the kept O_RDWR descriptor.
      assert.deepEqual(modes, [0, 2, 2, 2]);
      assert.equal(existsSync(`${file}.waiters`), false, 'the queue beside it is cleared');
    }
    assert.equal(readFileSync(file, 'utf8'), 'kept\n');
    // Any other error of a read-only attempt is reported, not retried.
    backend.tryLock = () => {
      throw Object.assign(new Error('flock failed: ENOLCK'), { code: 'ENOLCK' });
    };
    try {
      await assert.rejects(new FileLock(`${file}.other`, { isLockFile: true }).lock(), { code: 'ENOLCK' });
    } finally {
      backend.tryLock = real;
    }
  });

  test('named lock files: .gastown/locks spelled directly is a lock file; links allowed; a failed touch is quiet', async () => {
    // A file in a lock directory named with isLockFile is townlock's own: it gets the holder line.
    const file = fresh();
    mkdirSync(join(dir, '.gastown', 'locks'), { recursive: true });
    const own = join(dir, '.gastown', 'locks', `data${seq}.json.lock`);
    await new FileLock(own, { isLockFile: true }).withLock(settle);
    assert.equal(JSON.parse(readFileSync(own, 'utf8')).pid, process.pid);
    // The same lock file reached as a lockDir lock right after a named lock of it: the descriptor kept
    // for reuse (read-only) is not the one a holder line needs.
    const lockDir = join(dir, `ld${seq}`);
    mkdirSync(lockDir);
    const lockFile = join(lockDir, `${basename(file)}.lock`);
    await new FileLock(lockFile, { isLockFile: true }).withLock(() => {});
    await new FileLock(file, { lockDir }).withLock(settle);
    assert.equal(JSON.parse(readFileSync(lockFile, 'utf8')).pid, process.pid, 'holder line written');
    // A named file with a second hard link is locked (never written, as under flock(1)).
    const linked = join(dir, `linked${seq}`);
    writeFileSync(linked, 'data\n');
    linkSync(linked, `${linked}.2`);
    await new FileLock(linked, { isLockFile: true }).withLock(() => {});
    // A release that would touch the file to wake its watchers but may not (another user's file, a
    // read-only mount): the waiters poll, the release does not fail.
    const { loadBackend } = await import('./backend.js');
    const backend = await loadBackend();
    const emptyLock = join(dir, `empty${seq}.lock`);
    writeFileSync(emptyLock, '');
    mkdirSync(`${emptyLock}.waiters`); // a queue with nobody to ring: the release touches the file
    const real = backend.touch;
    let touches = 0;
    backend.touch = () => {
      touches++;
      throw Object.assign(new Error('futimens failed: EACCES'), { code: 'EACCES' });
    };
    try {
      await new FileLock(emptyLock, { isLockFile: true }).withLock(() => {});
    } finally {
      backend.touch = real;
    }
    assert.equal(touches, 1);
  });

  test('a release beside a named file clears at most 64 dead hidden bells at a time', async () => {
    const file = join(dir, `many${++seq}.lock`);
    writeFileSync(file, '');
    const queue = `${file}.waiters`;
    mkdirSync(queue);
    const old = new Date('2020-01-01T00:00:00Z');
    for (let i = 0; i < 100; i++) {
      const bell = join(queue, `.${String(i).padStart(20, '0')}-99999.bell`);
      writeFileSync(bell, '');
      utimesSync(bell, old, old);
    }
    await new FileLock(file, { isLockFile: true }).withLock(() => {});
    assert.equal(readdirSync(queue).length, 36, 'a bounded amount of work per release');
    await new FileLock(file, { isLockFile: true }).withLock(() => {});
    assert.equal(existsSync(queue), false);
  });

  test('a symlink at the lock path is refused with ERR_LOCK_SYMLINK', async () => {
    const file = fresh();
    const lock = new FileLock(file);
    mkdirSync(join(dir, '.gastown', 'locks'), { recursive: true });
    const target = join(dir, 'target');
    writeFileSync(target, 'keep');
    symlinkSync(target, lock.lockPath);
    await assert.rejects(lock.lock(), { code: 'ERR_LOCK_SYMLINK', name: 'LockSymlinkError' });
    assert.equal(readFileSync(target, 'utf8'), 'keep');
  });
});

describe('exclusion in one process', () => {
  test('100 async callers: the counter is exact and no two overlap', async () => {
    const file = fresh();
    let counter = 0;
    let inside = 0;
    let maxInside = 0;
    await Promise.all(
      Array.from({ length: 100 }, () =>
        withWriteLock(file, async () => {
          maxInside = Math.max(maxInside, ++inside);
          const v = counter;
          await yieldTurn();
          counter = v + 1;
          inside--;
        }),
      ),
    );
    assert.equal(counter, 100);
    assert.equal(maxInside, 1);
  });

  test('readers overlap; a writer waits for them; FIFO keeps a later reader behind the writer', async () => {
    const file = fresh();
    const events: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const r1 = withReadLock(file, async () => {
      events.push('r1 in');
      await gate;
      events.push('r1 out');
    });
    const r2 = withReadLock(file, async () => {
      events.push('r2 in');
      await gate;
      events.push('r2 out');
    });
    await yieldTurn();
    const w = withWriteLock(file, () => events.push('w'));
    const r3 = withReadLock(file, () => events.push('r3'));
    await yieldTurn();
    assert.deepEqual(events, ['r1 in', 'r2 in']);
    release();
    await Promise.all([r1, r2, w, r3]);
    assert.deepEqual(events.slice(2), ['r1 out', 'r2 out', 'w', 'r3']);
  });

  test('tryLock is false while held and true once free', async () => {
    const file = fresh();
    const a = new FileLock(file);
    const b = new FileLock(file);
    assert.equal(await a.tryLock(), true);
    assert.equal(await b.tryLock(), false);
    assert.equal(b.isLocked, false);
    await a.unlock();
    assert.equal(await b.tryLock(), true);
    await b.unlock();
  });

  test('shared tryLock succeeds beside another reader, fails beside a writer', async () => {
    const file = fresh();
    const r = new FileLock(file, { type: 'shared' });
    await r.lock();
    assert.equal(await new FileLock(file, { type: 'shared' }).tryLock(), true);
    assert.equal(await new FileLock(file).tryLock(), false);
    await r.unlock();
  });
});

describe('timeouts and cancellation', () => {
  test('positive timeout rejects with LockTimeoutError naming file, time and holder', async () => {
    const file = fresh();
    const holder = await FileLock.acquire(file);
    const started = performance.now();
    const err = await new FileLock(file, { timeout: 50 }).lock().then(
      () => assert.fail('should time out'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof LockTimeoutError);
    assert.ok(err instanceof FileLockError);
    assert.equal(err.code, 'ERR_LOCK_TIMEOUT');
    assert.equal(err.lockPath, holder.lockPath);
    assert.equal(err.holderPid, process.pid);
    assert.ok(err.waited >= 49, `waited ${err.waited}`);
    assert.ok(performance.now() - started < 5_000, 'ends promptly');
    assert.ok(err.message.includes(holder.lockPath), err.message);
    assert.match(err.message, new RegExp(`after \\d+ ms.*pid ${process.pid}`));
    await holder.unlock();
  });

  test('negative timeout makes one attempt', async () => {
    const file = fresh();
    const holder = await FileLock.acquire(file);
    await assert.rejects(new FileLock(file, { timeout: -1 }).lock(), { code: 'ERR_LOCK_TIMEOUT' });
    await holder.unlock();
    const once = new FileLock(file, { timeout: -1 });
    await once.lock();
    assert.ok(once.isLocked);
    await once.unlock();
  });

  test('timeout 0 waits until the holder releases', async () => {
    const file = fresh();
    const holder = await FileLock.acquire(file);
    const waiter = new FileLock(file, { timeout: 0 });
    let done = false;
    const waiting = waiter.lock().then(() => {
      done = true;
    });
    await new Promise((r) => setTimeout(r, 100)); // long enough for several polls; the assertion is "not yet"
    assert.equal(done, false);
    await holder.unlock();
    await waiting;
    assert.ok(waiter.isLocked);
    await waiter.unlock();
  });

  test('abort ends a wait with LockAbortedError carrying the reason', async () => {
    const file = fresh();
    const holder = await FileLock.acquire(file);
    const controller = new AbortController();
    const waiting = new FileLock(file, { signal: controller.signal }).lock();
    controller.abort(new Error('shutting down'));
    const err = await waiting.then(
      () => assert.fail('should abort'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof LockAbortedError);
    assert.equal(err.code, 'ERR_LOCK_ABORTED');
    assert.equal((err.cause as Error).message, 'shutting down');
    await assert.rejects(new FileLock(file, { signal: controller.signal }).lock(), {
      code: 'ERR_LOCK_ABORTED',
    });
    await holder.unlock();
  });

  test('abort and timeout while waiting on another process (OS-level wait) reject too', async () => {
    const file = fresh();
    const other = fixture('hold.mjs', [file]);
    await other.waitFor('held');
    const alias = new FileLock(file, { signal: AbortSignal.timeout(30) });
    await assert.rejects(alias.lock(), { code: 'ERR_LOCK_ABORTED' });
    const timed = new FileLock(file, { timeout: 30 });
    await assert.rejects(timed.lock(), {
      code: 'ERR_LOCK_TIMEOUT',
      message: new RegExp(`pid ${other.proc.pid}`),
    });
    other.send('release');
    await other.waitFor('released');
    await timed.lock();
    await timed.unlock();
  });

  test('timeouts and aborts leak no descriptor, timer or watcher', async () => {
    const file = fresh();
    const holder = await FileLock.acquire(file);
    // An OS-level wait (another process holds the lock) uses a file watcher; libuv keeps its inotify
    // descriptor once created, so one wait runs before counting.
    const otherFile = fresh();
    const other = fixture('hold.mjs', [otherFile]);
    await other.waitFor('held');
    await assert.rejects(new FileLock(otherFile, { timeout: 15 }).lock(), LockTimeoutError);
    await settle();
    const fdsBefore = openFds();
    const watchesBefore = inotifyWatches();
    const resourcesBefore = process.getActiveResourcesInfo().length;
    for (let i = 0; i < 20; i++) {
      await assert.rejects(new FileLock(file, { timeout: 5 }).lock(), LockTimeoutError);
      await assert.rejects(new FileLock(file, { signal: AbortSignal.timeout(5) }).lock(), LockAbortedError);
      assert.equal(await new FileLock(file).tryLock(), false);
    }
    for (let i = 0; i < 5; i++) {
      await assert.rejects(new FileLock(otherFile, { timeout: 15 }).lock(), LockTimeoutError);
      const aborted = new FileLock(otherFile, { signal: AbortSignal.timeout(15) });
      await assert.rejects(aborted.lock(), LockAbortedError);
    }
    await settle();
    assert.equal(openFds(), fdsBefore);
    assert.equal(inotifyWatches(), watchesBefore, 'every file watcher is closed');
    assert.equal(process.getActiveResourcesInfo().length, resourcesBefore);
    await holder.unlock();
    await settle();
    assert.equal(openFds(), fdsBefore - 1, 'the holder descriptor is closed once the loop turns');
    other.send('release');
    await other.exited();
  });
});

describe('worker threads', () => {
  test('a worker that locks and exits leaves no descriptor open in the process', async () => {
    const { Worker } = await import('node:worker_threads');
    const file = fresh();
    await settle();
    const before = openFds();
    const source = `
      const { withWriteLock, FileLock } = await import(${JSON.stringify(new URL('../../dist/filelock/index.js', import.meta.url).href)});
      await withWriteLock(${JSON.stringify(file)}, () => {});
      const l = await FileLock.acquire(${JSON.stringify(file)});
      await l.unlock();
    `;
    for (let i = 0; i < 3; i++) {
      // The worker runs the built package (npm test builds it first): workers do not inherit tsx.
      const worker = new Worker(source, { eval: true });
      const code = await new Promise((resolve, reject) => worker.on('exit', resolve).on('error', reject));
      assert.equal(code, 0);
    }
    assert.equal(openFds(), before);
  });
});

describe('misuse and re-entrancy', () => {
  test('lock twice on one handle: ERR_ALREADY_LOCKED; unlock when not held: ERR_NOT_LOCKED', async () => {
    const lock = new FileLock(fresh());
    await assert.rejects(lock.unlock(), NotLockedError);
    await lock.lock();
    await assert.rejects(lock.lock(), AlreadyLockedError);
    await assert.rejects(lock.lock(), { code: 'ERR_ALREADY_LOCKED' });
    await lock.unlock();
    await assert.rejects(lock.unlock(), { code: 'ERR_NOT_LOCKED' });
    // Two concurrent lock() calls on one handle: the second fails fast instead of leaking a hold.
    const first = lock.lock();
    await assert.rejects(lock.lock(), { code: 'ERR_ALREADY_LOCKED' });
    await first;
    await lock.unlock();
  });

  test('nested same or weaker mode re-enters; shared then exclusive fails at once', async () => {
    const file = fresh();
    const order: string[] = [];
    await withWriteLock(file, async () => {
      await withWriteLock(file, () => order.push('write in write'));
      await withReadLock(file, () => order.push('read in write'));
      const inner = new FileLock(file);
      await inner.lock();
      assert.ok(inner.isLocked);
      await inner.unlock();
    });
    await withReadLock(file, async () => {
      await withReadLock(file, () => order.push('read in read'));
      await assert.rejects(
        withWriteLock(file, () => order.push('never')),
        { code: 'ERR_LOCK_UPGRADE' },
      );
    });
    assert.deepEqual(order, ['write in write', 'read in write', 'read in read']);
  });

  test('a context that outlives its withLock does not re-enter a released lock', async () => {
    const file = fresh();
    let later!: Promise<void>;
    let outerDone!: () => void;
    const released = new Promise<void>((r) => {
      outerDone = r;
    });
    await withWriteLock(file, () => {
      // Started inside the outer lock's context, run only after that lock is released.
      later = released.then(() =>
        withWriteLock(file, async () => {
          const holders = await lockHolders(file);
          assert.deepEqual(
            holders.map((h) => h.mode),
            ['exclusive'],
            'must really hold the OS lock',
          );
        }),
      );
    });
    outerDone();
    await later;
  });

  test('withLock returns the result and unlocks when fn throws', async () => {
    const file = fresh();
    assert.equal(await withWriteLock(file, () => 42), 42);
    await assert.rejects(
      withWriteLock(file, () => {
        throw new Error('boom');
      }),
      /boom/,
    );
    assert.equal(await new FileLock(file).tryLock(), true);
  });

  test('Symbol.asyncDispose releases and is idempotent', async () => {
    const file = fresh();
    const lock = await FileLock.acquire(file);
    await lock[Symbol.asyncDispose]();
    await lock[Symbol.asyncDispose]();
    assert.equal(lock.isLocked, false);
    assert.equal(await new FileLock(file).tryLock(), true);
  });

  test('a platform without a backend gets ERR_UNSUPPORTED_PLATFORM, never a silent fallback', async () => {
    const { createBackend } = await import('./backend.js');
    await assert.rejects(createBackend('aix'), { code: 'ERR_UNSUPPORTED_PLATFORM', message: /"aix"/ });
  });

  test('bad options give ERR_INVALID_OPTION naming the option and value', () => {
    const cases: [unknown, RegExp][] = [
      [{ type: 'read' }, /type.*"read"/],
      [{ timeout: 'soon' }, /timeout.*"soon"/],
      [{ retryDelay: 0 }, /retryDelay.*0/],
      [{ maxRetryDelay: 1, retryDelay: 5 }, /maxRetryDelay/],
      [{ signal: {} }, /signal/],
      [{ mode: -1 }, /mode/],
      [{ lockDir: '' }, /lockDir/],
    ];
    for (const [options, message] of cases) {
      assert.throws(() => new FileLock('x', options as object), { code: 'ERR_INVALID_OPTION', message });
    }
    assert.throws(() => new FileLock(''), { code: 'ERR_INVALID_OPTION', message: /path/ });
  });
});

describe('diagnostics and clean-up', () => {
  test('lockHolders lists exclusive holders with pid and command, shared ones by mode', async () => {
    const file = fresh();
    assert.deepEqual(await lockHolders(file), []);
    await withWriteLock(file, async () => {
      const [holder, ...rest] = await lockHolders(file); // no event-loop turn needed in the holding process
      assert.equal(rest.length, 0);
      assert.equal(holder?.pid, process.pid);
      assert.equal(holder?.mode, 'exclusive');
      assert.equal(holder?.command, basename(process.argv[1]!));
      assert.ok(holder?.since);
    });
    const a = await FileLock.acquire(file, { type: 'shared' });
    const b = await FileLock.acquire(file, { type: 'shared' });
    const holders = await lockHolders(file);
    assert.equal(holders.length, 2);
    assert.ok(holders.every((h) => h.mode === 'shared' && h.pid === process.pid));
    await a.unlock();
    await b.unlock();
  });

  test('a lock re-taken after its file was cleaned works on the new file', async () => {
    const lockDir = join(dir, 'reclean', '.gastown', 'locks');
    const file = fresh();
    await withWriteLock(file, () => {}, { lockDir });
    assert.equal(await cleanStaleLocks(lockDir), 1);
    const lock = await FileLock.acquire(file, { lockDir });
    assert.ok(existsSync(lock.lockPath));
    assert.deepEqual(
      (await lockHolders(file, { lockDir })).map((h) => h.pid),
      [process.pid],
    );
    await lock.unlock();
  });
});
