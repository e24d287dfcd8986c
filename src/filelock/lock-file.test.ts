/**
 * What townlock will and will not use as a lock file, what it writes there, and what it reads back:
 * hostile files planted at the lock path (FIFOs, devices, hard links, other users' files and
 * directories), secrets on the command line, names that are not UTF-8, and very long timeouts.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  linkSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { basename, join } from 'node:path';
import { afterEach, describe, test } from 'node:test';
import { DIST, fixture, hasTool, reapAll, requireTool } from '../../test/multiprocess/helpers.js';
import { scratchDir } from '../../test/scratch-dir.js';
import { FileLock, lockHolders, lockPathFor, withReadLock, withWriteLock } from './index.js';

const dir = scratchDir('townlock-lockfile-');
afterEach(reapAll);
let seq = 0;
/** A fresh directory with the lock directory already created. */
const freshDir = () => {
  const d = join(dir, `d${++seq}`);
  mkdirSync(join(d, '.gastown', 'locks'), { recursive: true });
  return d;
};
const isRoot = process.geteuid?.() === 0;
const NOBODY = 65534;

describe('hostile lock files are refused with ERR_LOCK_UNSAFE', () => {
  test('a FIFO at the lock path: lock and lockHolders neither hang nor use it', async () => {
    const d = freshDir();
    const file = join(d, 'state.json');
    execFileSync('mkfifo', [lockPathFor(file)]);
    await assert.rejects(new FileLock(file, { timeout: 1_000 }).lock(), {
      code: 'ERR_LOCK_UNSAFE',
      message: /not a regular file/,
    });
    assert.deepEqual(await lockHolders(file), []);
  });

  test('a symlink to /dev/zero: refused by lock, and lockHolders reads nothing through it', async () => {
    const d = freshDir();
    const file = join(d, 'zero.json');
    symlinkSync('/dev/zero', lockPathFor(file));
    await assert.rejects(new FileLock(file).lock(), { code: 'ERR_LOCK_SYMLINK' });
    const before = process.memoryUsage().rss;
    assert.deepEqual(await lockHolders(file), []);
    assert.ok(process.memoryUsage().rss - before < 50 * 2 ** 20, 'must not read /dev/zero');
  });

  test('a lock file hard-linked to another file is refused and the other file is untouched', async () => {
    const d = freshDir();
    const victim = join(d, 'victim.txt');
    writeFileSync(victim, 'precious');
    const file = join(d, 'linked.json');
    linkSync(victim, lockPathFor(file));
    await assert.rejects(
      withWriteLock(file, () => {}),
      { code: 'ERR_LOCK_UNSAFE', message: /2 hard links/ },
    );
    assert.equal(readFileSync(victim, 'utf8'), 'precious');
  });

  test('a lock directory or lock file planted by another non-root user is refused', async (t) => {
    if (!isRoot) {
      t.skip('needs root to create files owned by another user (CI runs as root)');
      return;
    }
    const planted = join(dir, `shared${++seq}`);
    mkdirSync(join(planted, '.gastown', 'locks'), { recursive: true });
    chownSync(join(planted, '.gastown'), NOBODY, NOBODY);
    await assert.rejects(
      withWriteLock(join(planted, 'a.json'), () => {}),
      {
        code: 'ERR_LOCK_UNSAFE',
        message: /owned by uid 65534/,
      },
    );
    const d = freshDir();
    chownSync(join(d, '.gastown', 'locks'), NOBODY, NOBODY);
    await assert.rejects(
      withWriteLock(join(d, 'b.json'), () => {}),
      { code: 'ERR_LOCK_UNSAFE' },
    );
    const e = freshDir();
    writeFileSync(lockPathFor(join(e, 'c.json')), '');
    chownSync(lockPathFor(join(e, 'c.json')), NOBODY, NOBODY);
    await assert.rejects(
      withReadLock(join(e, 'c.json'), () => {}),
      { code: 'ERR_LOCK_UNSAFE' },
    );
    // Root's own files are trusted.
    const f = freshDir();
    chownSync(join(f, '.gastown', 'locks'), 0, 0);
    await withWriteLock(join(f, 'd.json'), () => {});
  });
});

describe('lock directories anyone could tamper with are refused', () => {
  test('a lock directory writable by everyone (no sticky bit) is refused; with the sticky bit it is used', async () => {
    const d = freshDir();
    chmodSync(join(d, '.gastown', 'locks'), 0o777);
    await assert.rejects(
      withWriteLock(join(d, 'w.json'), () => {}),
      {
        code: 'ERR_LOCK_UNSAFE',
        message: /writable by everyone/,
      },
    );
    chmodSync(join(d, '.gastown', 'locks'), 0o1777);
    await withWriteLock(join(d, 'w.json'), () => {});
  });

  test('directories townlock creates are never writable by everyone, whatever the umask', async () => {
    const d = join(dir, `umask${++seq}`);
    mkdirSync(d);
    const previous = process.umask(0);
    try {
      await withWriteLock(join(d, 'u.json'), () => {});
    } finally {
      process.umask(previous);
    }
    assert.equal(statSync(join(d, '.gastown')).mode & 0o002, 0);
    assert.equal(statSync(join(d, '.gastown', 'locks')).mode & 0o002, 0);
  });

  test('a .gastown that is a symlink is refused (it would give one lock file two spellings)', async () => {
    const d = join(dir, `gl${++seq}`);
    const shared = join(dir, `shared${seq}`);
    mkdirSync(join(shared, 'locks'), { recursive: true });
    mkdirSync(d);
    symlinkSync(shared, join(d, '.gastown'));
    await assert.rejects(
      withWriteLock(join(d, 'x.json'), () => {}),
      {
        code: 'ERR_LOCK_UNSAFE',
        message: /symbolic link/,
      },
    );
    // Through an explicit lockDir the same directory is used, resolved: one spelling only.
    await withWriteLock(join(d, 'x.json'), () => {}, { lockDir: join(d, '.gastown', 'locks') });
  });
});

describe('what a holder writes', () => {
  test('a first argument that cannot be stat\u2019ed (ENOTDIR, ENAMETOOLONG) is no reason to fail', () => {
    const script = `const { withWriteLock, lockHolders } = await import(${JSON.stringify(join(DIST, 'filelock', 'index.js'))});
const file = ${JSON.stringify(join(freshDir(), 'x.json'))};
await withWriteLock(file, async () => { console.log((await lockHolders(file))[0].command); });`;
    for (const arg of ['/etc/passwd/x', 'a'.repeat(5000)]) {
      const r = spawnSync(process.execPath, ['--input-type=module', '-e', script, arg], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout.trim(), basename(process.execPath), 'the executable names the holder');
    }
  });

  test('holder info names the executable, never the arguments (which may hold secrets)', async () => {
    const d = freshDir();
    const file = join(d, 'secret.json');
    const holder = fixture('hold.mjs', [file, 'exclusive', '0', '--password=hunter2']);
    await holder.waitFor('held');
    const content = readFileSync(lockPathFor(file), 'utf8');
    assert.ok(!content.includes('hunter2'), content);
    const info = JSON.parse(content.split('\n')[0]!);
    assert.equal(info.command, 'hold.mjs');
    assert.deepEqual(Object.keys(info).sort(), ['command', 'host', 'pid', 'since']);
    const [h] = await lockHolders(file);
    assert.equal(h?.command, 'hold.mjs');
    holder.send('release');
    assert.equal(await holder.exited(), 0);
  });

  test('under node -e the first argument is not taken for a script name; an older, longer line is cut', async () => {
    const d = freshDir();
    const file = join(d, 'eval.json');
    const lockFile = lockPathFor(file);
    writeFileSync(
      lockFile,
      `${'{"pid":1,"command":"old --password=hunter2"}'.padEnd(400, ' ')}\nmore secrets\n`,
    );
    const src = `const { FileLock } = await import(${JSON.stringify(join(DIST, 'filelock', 'index.js'))});
      const l = await FileLock.acquire(${JSON.stringify(file)});
      await new Promise((r) => setImmediate(r));
      console.log('held'); await l.unlock();`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', src, '--', '--db-password=hunter2'], {
      encoding: 'utf8',
    });
    assert.equal(r.stdout.trim(), 'held', r.stderr);
    const content = readFileSync(lockFile, 'utf8');
    assert.ok(!content.includes('hunter2'), content);
    assert.equal(JSON.parse(content.split('\n')[0]!).command, basename(process.execPath));
  });

  test('lockHolders reports a foreign holder by executable name only', async (t) => {
    if (!requireTool(t, 'flock', hasTool('flock'))) return;
    const d = freshDir();
    const file = join(d, 'foreign.json');
    await withWriteLock(file, () => {});
    const { start } = await import('../../test/multiprocess/helpers.js');
    const holder = start('flock', [lockPathFor(file), 'sh', '-c', 'echo held; read x # --token=s3cr3t']);
    await holder.waitFor('held');
    const holders = await lockHolders(file);
    assert.equal(holders.length, 1);
    assert.ok(!JSON.stringify(holders).includes('s3cr3t'), JSON.stringify(holders));
    holder.send('go');
    await holder.exited();
  });
});

describe('names and timeouts at the edges', () => {
  test('a file name that is not UTF-8 locks the same lock file as flock(1) on those bytes', async (t) => {
    if (!requireTool(t, 'flock', hasTool('flock'))) return;
    const d = freshDir();
    const name = Buffer.concat([Buffer.from(join(d, 'data')), Buffer.from([0xff, 0xfe])]);
    const lock = new FileLock(name);
    await lock.lock();
    const entries = readdirSync(Buffer.from(join(d, '.gastown', 'locks')), { encoding: 'buffer' });
    const expected = Buffer.concat([Buffer.from('data'), Buffer.from([0xff, 0xfe]), Buffer.from('.lock')]);
    assert.ok(
      entries.some((e) => e.equals(expected)),
      entries.map((e) => e.toString('hex')).join(' '),
    );
    // flock(1) on the raw bytes (spelled with printf's octal escapes: argv cannot carry them from Node).
    const flockRaw = () =>
      spawnSync('sh', [
        '-c',
        'flock -n "$(printf "%s/data\\377\\376.lock" "$1")" true',
        'sh',
        join(d, '.gastown', 'locks'),
      ]).status;
    assert.equal(flockRaw(), 1, 'flock(1) must see the lock held');
    assert.equal(existsSync(join(d, '.gastown', 'locks', 'data\ufffd\ufffd.lock')), false, 'never mangled');
    assert.equal(await new FileLock(name).tryLock(), false);
    await lock.unlock();
    assert.equal(flockRaw(), 0);
  });

  test('a lock file on a file system that takes no new entries (/proc) fails at once, never spins', async (t) => {
    if (process.platform !== 'linux') return t.skip('Linux /proc');
    // Node's mkdirSync(recursive) spins forever in native code on /proc/PID; a signal cannot stop it.
    const r = spawnSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `const { withWriteLock } = await import(${JSON.stringify(`${DIST}/filelock/index.js`)});
         await withWriteLock('/proc/self/x', () => {}).catch((e) => console.log(e.code));`,
      ],
      { encoding: 'utf8', timeout: 20_000 },
    );
    assert.equal(r.signal, null, 'finished on its own');
    assert.equal(r.stdout, 'ENOENT\n', r.stderr);
  });

  test('a timeout of 2^31 ms or more waits instead of timing out at once', async () => {
    const d = freshDir();
    const file = join(d, 'long.json');
    const holder = await FileLock.acquire(file);
    const controller = new AbortController();
    const waiter = new FileLock(file, { timeout: 2_600_000_000, signal: controller.signal });
    let settled = false;
    const waiting = waiter.lock().then(
      () => {
        settled = true;
      },
      (err: unknown) => {
        settled = true;
        throw err;
      },
    );
    await new Promise((resolve) => setTimeout(resolve, 50)); // a clamped timer would have fired by now
    assert.equal(settled, false, 'a long timeout must not fire at once');
    controller.abort();
    await assert.rejects(waiting, { code: 'ERR_LOCK_ABORTED' });
    await holder.unlock();
  });

  test('every public function rejects bad arguments with ERR_INVALID_OPTION naming them', async () => {
    const file = join(freshDir(), 'args.json');
    const bad: [string, () => unknown][] = [
      ['path', () => new FileLock(123 as unknown as string)],
      ['path', () => new FileLock(null as unknown as string)],
      ['options', () => new FileLock(file, null as unknown as object)],
      ['options', () => new FileLock(file, [] as unknown as object)],
      ['fn', () => withWriteLock(file, 'nope' as unknown as () => void)],
      ['options', () => withWriteLock(file, () => {}, 5 as unknown as object)],
      ['options', () => withReadLock(file, () => {}, null as unknown as object)],
      ['fn', () => new FileLock(file).withLock(undefined as unknown as () => void)],
      ['path', () => lockHolders(undefined as unknown as string)],
      ['options', () => lockHolders(file, null as unknown as object)],
      ['path', () => lockPathFor('')],
      ['lockDir', () => lockPathFor(file, 7 as unknown as string)],
      ['lockDir', () => lockPathFor(file, 'a\0b')],
      ['retryDelay', () => new FileLock(file, { retryDelay: Symbol('x') as unknown as number })],
      ['retryDelay', () => new FileLock(file, { retryDelay: 5n as unknown as number })],
    ];
    for (const [name, call] of bad) {
      await assert.rejects(
        (async () => call())(),
        (err: { code?: string; message?: string }) =>
          err.code === 'ERR_INVALID_OPTION' && (err.message ?? '').includes(name),
        `${name}: ${call}`,
      );
    }
  });
});
