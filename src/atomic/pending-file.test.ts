import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  closeSync,
  fstatSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { basename, join } from 'node:path';
import { afterEach, describe, test } from 'node:test';
import { openFds, scratchDir } from '../../test/scratch-dir.js';
import { ops } from './_fs-ops.js';
import { PendingFile, removeStaleTempFiles, writeFileAtomic, writeFileAtomicSync } from './index.js';
import { tempPathFor } from './pending-file.js';

const root = scratchDir('townlock-atomic-');
let seq = 0;
/** A fresh empty directory. */
const freshDir = () => {
  const dir = join(root, `d${++seq}`);
  mkdirSync(dir);
  return dir;
};
const original = { ...ops };
afterEach(() => Object.assign(ops, original));

describe('writeFileAtomic', () => {
  test('writes the content; a new file gets 0o600; an existing file keeps its mode', async () => {
    const dir = freshDir();
    const file = join(dir, 'a.json');
    await writeFileAtomic(file, 'one');
    assert.equal(readFileSync(file, 'utf8'), 'one');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    chmodSync(file, 0o640);
    await writeFileAtomic(file, new TextEncoder().encode('two'));
    assert.equal(readFileSync(file, 'utf8'), 'two');
    assert.equal(statSync(file).mode & 0o777, 0o640);
    await writeFileAtomic(file, 'three', { mode: 0o604, fsync: false });
    assert.equal(statSync(file).mode & 0o777, 0o604);
    assert.deepEqual(readdirSync(dir), ['a.json']);
  });

  test('100 concurrent writers never clash: the result is one whole write and no temp file remains', async () => {
    const dir = freshDir();
    const file = join(dir, 'b.txt');
    const bodies = Array.from({ length: 100 }, (_, i) => `writer ${i} `.repeat(200));
    await Promise.all(bodies.map((body) => writeFileAtomic(file, body)));
    assert.ok(bodies.includes(readFileSync(file, 'utf8')));
    assert.deepEqual(readdirSync(dir), ['b.txt']);
  });

  test('a dangling symlink gets its target created and stays a symlink (the file the lock protects)', async () => {
    const dir = freshDir();
    mkdirSync(join(dir, 'real'));
    symlinkSync('real/state.json', join(dir, 'state.json'));
    await writeFileAtomic(join(dir, 'state.json'), 'first');
    assert.equal(lstatSync(join(dir, 'state.json')).isSymbolicLink(), true);
    assert.equal(readFileSync(join(dir, 'real', 'state.json'), 'utf8'), 'first');
  });

  test('a symlink keeps pointing at the new content', async () => {
    const dir = freshDir();
    writeFileSync(join(dir, 'real'), 'old');
    symlinkSync(join(dir, 'real'), join(dir, 'link'));
    await writeFileAtomic(join(dir, 'link'), 'new');
    assert.equal(readFileSync(join(dir, 'real'), 'utf8'), 'new');
    assert.equal(readFileSync(join(dir, 'link'), 'utf8'), 'new');
  });

  test('bad options are rejected with ERR_INVALID_OPTION and nothing is written', async () => {
    const dir = freshDir();
    await assert.rejects(writeFileAtomic(join(dir, 'x'), 'x', { mode: 0o10000 }), {
      code: 'ERR_INVALID_OPTION',
    });
    await assert.rejects(writeFileAtomic('', 'x'), { code: 'ERR_INVALID_OPTION', message: /path/ });
    await assert.rejects(writeFileAtomic(join(dir, 'x'), 'x', { fsync: 'yes' as never }), /fsync/);
    assert.deepEqual(readdirSync(dir), []);
  });

  for (const step of ['open', 'chmod', 'write', 'sync', 'close', 'rename'] as const) {
    test(`a failing ${step} leaves the old file, no temp file and no open descriptor`, async () => {
      const dir = freshDir();
      const file = join(dir, 'c.json');
      writeFileSync(file, 'before');
      const fds = openFds();
      (ops as Record<string, unknown>)[step] = async (fd: unknown) => {
        if (step === 'close') closeSync(fd as number); // close(2) frees the descriptor even when it fails
        throw Object.assign(new Error(`injected ${step} failure`), { code: 'EIO' });
      };
      await assert.rejects(writeFileAtomic(file, 'after'), new RegExp(`injected ${step}`));
      assert.equal(readFileSync(file, 'utf8'), 'before');
      assert.deepEqual(readdirSync(dir), ['c.json']);
      assert.equal(openFds(), fds);
    });
  }

  test('a failing directory fsync is reported after the new content is in place', async () => {
    const dir = freshDir();
    const file = join(dir, 'd.json');
    ops.syncDir = async () => {
      throw Object.assign(new Error('injected syncDir failure'), { code: 'EIO' });
    };
    await assert.rejects(writeFileAtomic(file, 'new'), /injected syncDir/);
    assert.equal(readFileSync(file, 'utf8'), 'new');
    assert.deepEqual(readdirSync(dir), ['d.json']);
  });

  test('the directory is fsynced after the rename, the data before it', async () => {
    const dir = freshDir();
    const order: string[] = [];
    for (const step of ['sync', 'rename', 'syncDir'] as const) {
      const real = original[step] as (...a: unknown[]) => Promise<void>;
      (ops as Record<string, unknown>)[step] = (...args: unknown[]) => {
        order.push(step);
        return real(...args);
      };
    }
    await writeFileAtomic(join(dir, 'e'), 'x');
    assert.deepEqual(order, ['sync', 'rename', 'syncDir']);
    order.length = 0;
    await writeFileAtomic(join(dir, 'e'), 'x', { fsync: false });
    assert.deepEqual(order, ['rename']);
  });
});

describe('writeFileAtomicSync', () => {
  test('the same result as writeFileAtomic: content, modes, symlinks followed, no temp file left', () => {
    const dir = freshDir();
    const file = join(dir, 'a.json');
    writeFileAtomicSync(file, 'one');
    assert.equal(readFileSync(file, 'utf8'), 'one');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    chmodSync(file, 0o640);
    writeFileAtomicSync(file, new TextEncoder().encode('two'));
    assert.equal(readFileSync(file, 'utf8'), 'two');
    assert.equal(statSync(file).mode & 0o777, 0o640);
    writeFileAtomicSync(file, 'three', { mode: 0o604, fsync: false });
    assert.equal(statSync(file).mode & 0o777, 0o604);
    mkdirSync(join(dir, 'real'));
    symlinkSync('real/state.json', join(dir, 'state.json'));
    writeFileAtomicSync(join(dir, 'state.json'), 'linked');
    assert.equal(lstatSync(join(dir, 'state.json')).isSymbolicLink(), true);
    assert.equal(readFileSync(join(dir, 'real', 'state.json'), 'utf8'), 'linked');
    assert.deepEqual(readdirSync(dir).sort(), ['a.json', 'real', 'state.json']);
    assert.deepEqual(readdirSync(join(dir, 'real')), ['state.json']);
  });

  test('fsyncs on the calling thread: the data before the rename, the directory after it', () => {
    const dir = freshDir();
    const order: string[] = [];
    for (const step of ['sync', 'syncNow', 'rename', 'syncDir', 'syncDirNow'] as const) {
      const real = original[step] as (...a: unknown[]) => unknown;
      (ops as Record<string, unknown>)[step] = (...args: unknown[]) => {
        order.push(step);
        return real(...args);
      };
    }
    writeFileAtomicSync(join(dir, 'e'), 'x');
    assert.deepEqual(order, ['syncNow', 'rename', 'syncDirNow']);
    order.length = 0;
    writeFileAtomicSync(join(dir, 'e'), 'x', { fsync: false });
    assert.deepEqual(order, ['rename']);
  });

  for (const step of ['open', 'chmod', 'write', 'syncNow', 'close', 'rename'] as const) {
    test(`a failing ${step} throws, leaving the old file, no temp file and no open descriptor`, () => {
      const dir = freshDir();
      const file = join(dir, 'c.json');
      writeFileSync(file, 'before');
      const fds = openFds();
      (ops as Record<string, unknown>)[step] = (fd: unknown) => {
        if (step === 'close') closeSync(fd as number); // close(2) frees the descriptor even when it fails
        throw Object.assign(new Error(`injected ${step} failure`), { code: 'EIO' });
      };
      assert.throws(() => writeFileAtomicSync(file, 'after'), new RegExp(`injected ${step}`));
      assert.equal(readFileSync(file, 'utf8'), 'before');
      assert.deepEqual(readdirSync(dir), ['c.json']);
      assert.equal(openFds(), fds);
    });
  }

  test('a failing directory fsync is reported after the new content is in place', () => {
    const dir = freshDir();
    const file = join(dir, 'd.json');
    ops.syncDirNow = () => {
      throw Object.assign(new Error('injected syncDirNow failure'), { code: 'EIO' });
    };
    assert.throws(() => writeFileAtomicSync(file, 'new'), /injected syncDirNow/);
    assert.equal(readFileSync(file, 'utf8'), 'new');
    assert.deepEqual(readdirSync(dir), ['d.json']);
  });

  test('bad arguments throw ERR_INVALID_OPTION naming the argument, and create nothing', () => {
    const dir = freshDir();
    const file = join(dir, 'keep.json');
    writeFileSync(file, 'precious');
    const cases: [string, () => unknown][] = [
      ['data', () => writeFileAtomicSync(file, 123 as unknown as string)],
      ['data', () => writeFileAtomicSync(file, null as unknown as string)],
      ['options', () => writeFileAtomicSync(file, 'x', null as unknown as object)],
      ['mode', () => writeFileAtomicSync(file, 'x', { mode: 0o10000 })],
      ['fsync', () => writeFileAtomicSync(file, 'x', { fsync: 'yes' as never })],
      ['path', () => writeFileAtomicSync(42 as unknown as string, 'x')],
      ['path', () => writeFileAtomicSync('', 'x')],
      ['path', () => writeFileAtomicSync(`${file}\0`, 'x')],
    ];
    for (const [name, call] of cases) {
      assert.throws(call, (err: { code?: string; message?: string }) => {
        assert.equal(err.code, 'ERR_INVALID_OPTION', `${name}: ${err.message}`);
        assert.match(err.message ?? '', new RegExp(name));
        return true;
      });
    }
    assert.equal(readFileSync(file, 'utf8'), 'precious');
    assert.deepEqual(readdirSync(dir), ['keep.json']);
  });
});

describe('failures of close and unlink', () => {
  test('a close that fails (having freed the descriptor) is not retried: a file opened since stays open', async () => {
    for (const write of [
      (f: string) => writeFileAtomic(f, 'after'),
      async (f: string) => writeFileAtomicSync(f, 'after'),
    ]) {
      const dir = freshDir();
      const file = join(dir, 'c.json');
      writeFileSync(file, 'before');
      let victim: number | undefined;
      const realClose = original.close;
      ops.close = (fd: number) => {
        realClose(fd);
        victim = openSync(file, 'r'); // another thread's open would get the freed number too
        throw Object.assign(new Error('injected close failure'), { code: 'EIO' });
      };
      await assert.rejects(write(file), /injected close failure/);
      ops.close = realClose;
      assert.ok(victim !== undefined);
      assert.ok(fstatSync(victim).isFile(), 'the file opened after the failed close is still open');
      closeSync(victim);
      assert.equal(readFileSync(file, 'utf8'), 'before');
      assert.deepEqual(readdirSync(dir), ['c.json']);
    }
  });

  test('removeStaleTempFiles counts only what it removed, also when an unlink fails asynchronously', async () => {
    const dir = freshDir();
    const file = join(dir, 's.json');
    const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
    writeFileSync(tempPathFor(file, dead), 'x');
    ops.unlink = async () => {
      throw Object.assign(new Error('injected unlink failure'), { code: 'EACCES' });
    };
    assert.equal(await removeStaleTempFiles(file), 0);
    assert.equal(readdirSync(dir).length, 1);
  });
});

describe('PendingFile', () => {
  test('nothing replaces the target until commit; cleanup is idempotent and a no-op after commit', async () => {
    const dir = freshDir();
    const file = join(dir, 'p.txt');
    writeFileSync(file, 'old');
    const pending = await PendingFile.create(file);
    await pending.write('new');
    assert.equal(readFileSync(file, 'utf8'), 'old');
    assert.match(pending.tempPath, new RegExp(`\\.p\\.txt\\.tmp-${process.pid}-[0-9a-f]{8}-[0-9a-f]{12}$`));
    await pending.commit();
    await pending.cleanup();
    await pending[Symbol.asyncDispose]();
    assert.equal(readFileSync(file, 'utf8'), 'new');
    assert.deepEqual(readdirSync(dir), ['p.txt']);
    await assert.rejects(pending.write('again'), { code: 'ERR_INVALID_OPTION' });
  });

  test('disposing without commit removes the temp file and keeps the old content', async () => {
    const dir = freshDir();
    const file = join(dir, 'q.txt');
    writeFileSync(file, 'old');
    const pending = await PendingFile.create(file);
    await pending.write('abandoned');
    await pending[Symbol.asyncDispose]();
    await pending.cleanup();
    assert.equal(readFileSync(file, 'utf8'), 'old');
    assert.deepEqual(readdirSync(dir), ['q.txt']);
  });

  test('removeStaleTempFiles removes only temp files of that target whose writer is dead', async () => {
    const dir = freshDir();
    const file = join(dir, 'r.json');
    const dead = spawnSync(process.execPath, ['-e', '0']).pid!; // exited: its pid names no live process
    const deadTemp = tempPathFor(file, dead);
    const liveTemp = tempPathFor(file, process.pid);
    // Another host or container: its pids mean nothing here, so only age can tell it was abandoned.
    const foreign = join(dir, `.r.json.tmp-${dead}-ffffffff-abc`);
    const foreignOld = join(dir, `.r.json.tmp-${dead}-eeeeeeee-abc`);
    for (const f of [deadTemp, liveTemp, foreign, foreignOld, join(dir, `.other.json.tmp-${dead}-abc`)]) {
      writeFileSync(f, 'x');
    }
    const twoHoursAgo = new Date(Date.now() - 2 * 3600_000);
    utimesSync(foreignOld, twoHoursAgo, twoHoursAgo);
    writeFileSync(file, 'x');
    assert.equal(await removeStaleTempFiles(file), 2);
    assert.deepEqual(
      readdirSync(dir).sort(),
      [`.other.json.tmp-${dead}-abc`, basename(foreign), basename(liveTemp), 'r.json'].sort(),
    );
  });
});

describe('bad arguments', () => {
  test('leave the target as it was and give ERR_INVALID_OPTION naming the argument', async () => {
    const dir = freshDir();
    const file = join(dir, 'keep.json');
    writeFileSync(file, 'precious');
    const cases: [string, () => Promise<unknown>][] = [
      ['data', () => writeFileAtomic(file, 123 as unknown as string)],
      ['data', () => writeFileAtomic(file, {} as unknown as string)],
      ['data', () => writeFileAtomic(file, true as unknown as string)],
      ['data', () => writeFileAtomic(file, null as unknown as string)],
      ['data', () => writeFileAtomic(file, undefined as unknown as string)],
      ['data', () => writeFileAtomic(file, [1, 2] as unknown as string)],
      ['options', () => writeFileAtomic(file, 'x', null as unknown as object)],
      ['options', () => writeFileAtomic(file, 'x', 'fast' as unknown as object)],
      ['path', () => writeFileAtomic(42 as unknown as string, 'x')],
      ['path', () => writeFileAtomic('', 'x')],
      ['path', () => PendingFile.create(undefined as unknown as string)],
      ['path', () => removeStaleTempFiles(null as unknown as string)],
    ];
    for (const [name, call] of cases) {
      await assert.rejects(call(), (err: { code?: string; message?: string }) => {
        assert.equal(err.code, 'ERR_INVALID_OPTION', `${name}: ${err.message}`);
        assert.match(err.message ?? '', new RegExp(name));
        return true;
      });
    }
    const pending = await PendingFile.create(file);
    await assert.rejects(pending.write(7 as unknown as string), { code: 'ERR_INVALID_OPTION' });
    await pending.cleanup();
    assert.equal(readFileSync(file, 'utf8'), 'precious');
    assert.deepEqual(readdirSync(dir), ['keep.json']);
  });
});
