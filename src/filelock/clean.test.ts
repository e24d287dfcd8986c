/**
 * cleanStaleLocks: it deletes only unused lock files in townlock's own lock directories, and never lets
 * a process that does not re-check the inode (flock(1), Python, the Go tool) hold a deleted lock file
 * while a newcomer holds its replacement. The cross-process stress version is in test/multiprocess.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import {
  existsSync,
  linkSync,
  mkdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, test } from 'node:test';
import { type Child, hasTool, reapAll, requireTool, start } from '../../test/multiprocess/helpers.js';
import { scratchDir } from '../../test/scratch-dir.js';
import { cleanHooks } from './clean.js';
import { cleanLockFile, cleanStaleLocks, FileLock, lockPathFor, withWriteLock } from './index.js';

const root = scratchDir('townlock-clean-');
afterEach(() => {
  cleanHooks.beforeUnlink = undefined;
  reapAll();
});
let seq = 0;
/** A fresh project directory. */
const project = () => {
  const d = join(root, `p${++seq}`);
  mkdirSync(d);
  return d;
};
/** Creates the lock file of `file` the way a lock does, and returns its path. */
const used = async (file: string) => {
  await withWriteLock(file, () => {});
  return lockPathFor(file);
};

/** A Python process that opens a file (without locking it), then locks and closes it when told. */
const STRAGGLER = `
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
print('opened', flush=True)
sys.stdin.readline()
fcntl.flock(fd, fcntl.LOCK_EX)
print('locked', flush=True)
sys.stdin.readline()
os.close(fd)
print('closed', flush=True)
sys.stdin.readline()
`;
const straggler = (path: string): Child => start('python3', ['-c', STRAGGLER, path]);
/** Whether flock(1) gets the lock file at once. */
const flockFree = (lockPath: string) => spawnSync('flock', ['-n', lockPath, 'true']).status === 0;

describe('what cleanStaleLocks may touch', () => {
  test("a project's own *.lock files are never touched, only .gastown/locks", async () => {
    const d = project();
    for (const name of ['Cargo.lock', 'yarn.lock', 'Gemfile.lock']) writeFileSync(join(d, name), name);
    assert.equal(await cleanStaleLocks(d), 0, 'no .gastown/locks: nothing to clean');
    const lockFile = await used(join(d, 'state.json'));
    assert.equal(await cleanStaleLocks(d), 1);
    assert.equal(existsSync(lockFile), false);
    for (const name of ['Cargo.lock', 'yarn.lock', 'Gemfile.lock']) {
      assert.equal(readFileSync(join(d, name), 'utf8'), name);
    }
  });

  test("waiters' queues: abandoned bells and then the empty directory go, a waiting one's bell stays", async (t) => {
    if (!requireTool(t, 'flock')) return;
    const d = project();
    const lockFile = await used(join(d, 'q.json'));
    const queue = `${lockFile}.waiters`;
    mkdirSync(queue);
    const dead = join(queue, '00000000000000000001-1.bell');
    const live = join(queue, '00000000000000000002-2.bell');
    writeFileSync(dead, '');
    const deadHidden = join(queue, '.00000000000000000003-3.bell'); // a waiter that died making its bell
    writeFileSync(deadHidden, '');
    const twoMinutesAgo = new Date(Date.now() - 120_000);
    utimesSync(deadHidden, twoMinutesAgo, twoMinutesAgo);
    const newHidden = join(queue, '.00000000000000000004-4.bell'); // one being made now: left alone
    writeFileSync(newHidden, '');
    writeFileSync(join(queue, 'notes.txt'), 'not a bell'); // not ours: stays
    const waiter = start('flock', ['-x', live, '-c', 'echo queued; read line']);
    await waiter.waitFor('queued');
    assert.equal(await cleanStaleLocks(d), 1);
    assert.equal(existsSync(dead), false, 'the abandoned bell was removed');
    assert.equal(existsSync(deadHidden), false, 'the abandoned hidden bell was removed');
    assert.equal(existsSync(newHidden), true, 'a hidden bell under a minute old stays');
    rmSync(newHidden);
    assert.equal(existsSync(live), true, "a waiter's bell stays");
    assert.equal(existsSync(join(queue, 'notes.txt')), true);
    waiter.send('go');
    assert.equal(await waiter.exited(), 0);
    rmSync(join(queue, 'notes.txt'));
    assert.equal(await cleanStaleLocks(d), 0);
    assert.equal(existsSync(queue), false, 'the empty queue directory went');
    await withWriteLock(join(d, 'q.json'), () => {}); // and locking still works
  });

  test('the lock directory itself may be given; a missing dir or a file is refused with ERR_LOCK_DIR', async () => {
    const d = project();
    const lockFile = await used(join(d, 'a.json'));
    assert.equal(await cleanStaleLocks(join(d, '.gastown', 'locks')), 1);
    assert.equal(existsSync(lockFile), false);
    await assert.rejects(cleanStaleLocks(join(d, 'missing')), {
      code: 'ERR_LOCK_DIR',
      message: /does not exist/,
    });
    writeFileSync(join(d, 'plain'), 'x');
    await assert.rejects(cleanStaleLocks(join(d, 'plain')), {
      code: 'ERR_LOCK_DIR',
      message: /not a directory/,
    });
    await assert.rejects(cleanStaleLocks(''), { code: 'ERR_INVALID_OPTION' });
    await assert.rejects(cleanStaleLocks(7 as unknown as string), { code: 'ERR_INVALID_OPTION' });
  });

  test('a .gastown/locks that is a symlink is refused, and what it points at is untouched', async () => {
    const d = project();
    const elsewhere = join(d, 'elsewhere');
    mkdirSync(elsewhere);
    writeFileSync(join(elsewhere, 'keep.lock'), 'x');
    mkdirSync(join(d, '.gastown'));
    symlinkSync(elsewhere, join(d, '.gastown', 'locks'));
    await assert.rejects(cleanStaleLocks(d), { code: 'ERR_LOCK_DIR' });
    assert.ok(existsSync(join(elsewhere, 'keep.lock')));
  });

  test('a .gastown that is a symlink is refused: what it points at is never cleaned', async () => {
    const d = project();
    const other = join(d, 'other');
    mkdirSync(join(other, 'locks'), { recursive: true });
    writeFileSync(join(other, 'locks', 'Cargo.lock'), 'precious');
    const town = join(d, 'town');
    mkdirSync(town);
    symlinkSync(other, join(town, '.gastown'));
    await assert.rejects(cleanStaleLocks(town), { code: 'ERR_LOCK_DIR', message: /symbolic link/ });
    assert.equal(
      await cleanStaleLocks(join(town, '.gastown', 'locks')),
      0,
      'resolves to other/locks: not ours',
    );
    assert.equal(readFileSync(join(other, 'locks', 'Cargo.lock'), 'utf8'), 'precious');
  });

  test('held, foreign-typed, hard-linked and symlinked entries are kept', async () => {
    const d = project();
    const lockDir = join(d, '.gastown', 'locks');
    const held = await FileLock.acquire(join(d, 'held.json'));
    await used(join(d, 'free.json'));
    execFileSync('mkfifo', [join(lockDir, 'fifo.lock')]);
    writeFileSync(join(d, 'target'), 'data');
    linkSync(join(d, 'target'), join(lockDir, 'hard.lock'));
    symlinkSync(join(d, 'target'), join(lockDir, 'sym.lock'));
    writeFileSync(join(lockDir, 'notes.txt'), 'not a lock');
    assert.equal(await cleanStaleLocks(d), 1);
    for (const kept of ['fifo.lock', 'hard.lock', 'sym.lock', 'notes.txt'])
      assert.ok(existsSync(join(lockDir, kept)), kept);
    assert.ok(existsSync(held.lockPath));
    assert.equal(readFileSync(join(d, 'target'), 'utf8'), 'data');
    await held.unlock();
  });
});

describe('cleanLockFile: one lock file, the same rules', () => {
  test('deletes an unused lock file; keeps a held one; a missing one is not deleted', async () => {
    const d = project();
    const free = await used(join(d, 'free.json'));
    assert.equal(await cleanLockFile(free), true);
    assert.equal(existsSync(free), false);
    assert.equal(await cleanLockFile(free), false, 'gone already');
    const held = await FileLock.acquire(join(d, 'held.json'));
    assert.equal(await cleanLockFile(held.lockPath), false);
    assert.ok(existsSync(held.lockPath));
    await held.unlock();
  });

  test('anything but a *.lock file in a .gastown/locks directory is refused with ERR_LOCK_DIR', async () => {
    const d = project();
    writeFileSync(join(d, 'Cargo.lock'), 'keep');
    await assert.rejects(cleanLockFile(join(d, 'Cargo.lock')), { code: 'ERR_LOCK_DIR' });
    assert.equal(readFileSync(join(d, 'Cargo.lock'), 'utf8'), 'keep');
    await used(join(d, 'a.json'));
    writeFileSync(join(d, '.gastown', 'locks', 'notes.txt'), 'keep');
    await assert.rejects(cleanLockFile(join(d, '.gastown', 'locks', 'notes.txt')), { code: 'ERR_LOCK_DIR' });
    assert.ok(existsSync(join(d, '.gastown', 'locks', 'notes.txt')));
    await assert.rejects(cleanLockFile(''), { code: 'ERR_INVALID_OPTION' });
  });

  test('a hard-linked lock file, or one another process has open, is kept', async (t) => {
    const d = project();
    const lockDir = join(d, '.gastown', 'locks');
    await used(join(d, 'x.json'));
    writeFileSync(join(d, 'target'), 'data');
    linkSync(join(d, 'target'), join(lockDir, 'hard.lock'));
    assert.equal(await cleanLockFile(join(lockDir, 'hard.lock')), false);
    assert.equal(readFileSync(join(d, 'target'), 'utf8'), 'data');
    if (!requireTool(t, 'python3', hasTool('python3'))) return;
    const lockFile = await used(join(d, 'open.json'));
    const s = straggler(lockFile);
    await s.waitFor('opened');
    assert.equal(await cleanLockFile(lockFile), false);
    assert.ok(existsSync(lockFile));
    s.send('lock');
    await s.waitFor('locked');
    s.send('close');
    await s.waitFor('closed');
  });
});

describe('foreign processes that do not re-check the inode', () => {
  test('a lock file another process has open (about to flock it) is not deleted', async (t) => {
    if (!requireTool(t, 'python3', hasTool('python3'))) return;
    const d = project();
    const lockFile = await used(join(d, 'open.json'));
    const s = straggler(lockFile);
    await s.waitFor('opened');
    assert.equal(await cleanStaleLocks(d), 0);
    assert.ok(existsSync(lockFile));
    s.send('lock');
    await s.waitFor('locked');
    assert.equal(
      await new FileLock(join(d, 'open.json'), { timeout: -1 }).tryLock(),
      false,
      'one file, one lock',
    );
    s.send('close');
    await s.waitFor('closed');
  });

  test('an open through another path to the same file (a symlinked directory) still counts as open', async (t) => {
    if (!requireTool(t, 'python3', hasTool('python3'))) return;
    const d = project();
    const lockFile = await used(join(d, 'via.json'));
    const alias = join(root, `alias${seq}`);
    symlinkSync(join(d, '.gastown'), alias);
    const s = straggler(join(alias, 'locks', 'via.json.lock'));
    await s.waitFor('opened');
    assert.equal(await cleanStaleLocks(d), 0);
    assert.ok(existsSync(lockFile));
    s.send('lock');
    await s.waitFor('locked');
    s.send('close');
    await s.waitFor('closed');
  });

  test('a process that opens the file between the check and the unlink never holds it beside a newcomer', async (t) => {
    if (!requireTool(t, 'python3', hasTool('python3')) || !requireTool(t, 'flock', hasTool('flock'))) return;
    const d = project();
    const file = join(d, 'race.json');
    const lockFile = await used(file);
    let s: Child | undefined;
    cleanHooks.beforeUnlink = async (path) => {
      s = straggler(path);
      await s.waitFor('opened');
    };
    const cleaning = cleanStaleLocks(d);
    while (!s) await new Promise((r) => setImmediate(r));
    await s.waitFor('opened');
    s.send('lock');
    await s.waitFor('locked'); // it holds the deleted inode...
    assert.equal(flockFree(lockFile), false, '...so a newcomer on the path must wait');
    assert.equal(await new FileLock(file, { timeout: -1 }).tryLock(), false);
    s.send('close');
    await s.waitFor('closed');
    assert.equal(await cleaning, 0, 'the file it had to keep locked is not counted as removed');
    assert.equal(flockFree(lockFile), true, 'free again once the straggler closed the old inode');
    s.send('exit');
  });
});
