/**
 * The registry's memory is a sequence of committed snapshots: reloads, reads and failed or unfinished
 * writes never lose or invent a change, and writes made from the wrong place fail fast instead of
 * deadlocking. Each test here failed on the shared-mutable-state design (f2d641a).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs, { mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { dirname, join } from 'node:path';
import { afterEach, describe, test } from 'node:test';
import { fixture, reapAll } from '../../test/multiprocess/helpers.js';
import { scratchDir } from '../../test/scratch-dir.js';
import { ops } from '../atomic/_fs-ops.js';
import { withWriteLock } from '../filelock/index.js';
import { MachineRegistry, type RegistryDraft } from './index.js';

const root = scratchDir('townlock-snapshots-');
const original = { ...ops };
afterEach(() => {
  Object.assign(ops, original);
  reapAll();
});
let seq = 0;
const freshPath = () => join(root, `s${++seq}`, 'machines.json');
const ssh = (name: string) => ({ name, type: 'ssh' as const, host: `${name}.example` });
/** Names of the machines in the file on disk. */
const onDisk = (path: string) => Object.keys(JSON.parse(readFileSync(path, 'utf8')).machines).sort();
/** Rejects if `p` has not settled within `ms` (a hang guard, not a speed assertion). */
const within = <T>(p: Promise<T>, ms: number, what: string) =>
  Promise.race([
    p,
    new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error(`${what}: still pending after ${ms} ms`)), ms).unref(),
    ),
  ]);

describe('no acknowledged write is ever lost', () => {
  test('a reload() while an add is being written does not undo it in memory or in the next write', async () => {
    const path = freshPath();
    const reg = await MachineRegistry.open(path);
    await reg.add(ssh('a'));
    let reloading: Promise<void> | undefined;
    ops.sync = async (fd: number) => {
      reloading ??= reg.reload(); // another part of the app refreshes while the batch is being written
      return original.sync(fd);
    };
    await reg.add(ssh('b'));
    await reloading;
    Object.assign(ops, original);
    assert.ok(reg.has('b'), 'memory lost the acknowledged add');
    await reg.add(ssh('c'));
    assert.deepEqual(onDisk(path), ['a', 'b', 'c', 'local']);
    assert.deepEqual(
      reg.list().map((m) => m.name),
      ['a', 'b', 'c', 'local'],
    );
  });

  test('through a symlink and its target at once: every acknowledged add is in the file', async () => {
    const a = join(root, `sym${++seq}`, 'a');
    const b = join(root, `sym${seq}`, 'b');
    mkdirSync(a, { recursive: true });
    mkdirSync(b, { recursive: true });
    symlinkSync('../a/machines.json', join(b, 'machines.json'));
    const viaA = await MachineRegistry.open(join(a, 'machines.json'));
    const viaB = await MachineRegistry.open(join(b, 'machines.json'));
    const adds: Promise<void>[] = [];
    for (let i = 0; i < 10; i++) {
      adds.push(viaA.add(ssh(`a${i}`)));
      adds.push(viaB.add(ssh(`b${i}`)));
    }
    const results = await Promise.allSettled(adds);
    assert.deepEqual(
      results.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason)),
      [],
    );
    assert.equal(onDisk(join(a, 'machines.json')).length, 21);
    assert.equal(viaA.list().length, 21);
    assert.equal(viaB.list().length, 21);
  });
});

describe('reads see committed snapshots only', () => {
  test('a write that fails (EIO on fsync) leaves no phantom machine in memory', async () => {
    const path = freshPath();
    const reg = await MachineRegistry.open(path);
    await reg.add(ssh('kept'));
    ops.sync = async () => {
      throw Object.assign(new Error('injected EIO'), { code: 'EIO' });
    };
    await assert.rejects(reg.add(ssh('ghost')), { code: 'ERR_REGISTRY_IO' });
    assert.equal(reg.has('ghost'), false);
    await assert.rejects(
      reg.update((d) => {
        d.add(ssh('ghost2'));
      }),
      { code: 'ERR_REGISTRY_IO' },
    );
    assert.equal(reg.has('ghost2'), false);
    Object.assign(ops, original);
    await reg.add(ssh('after'));
    assert.deepEqual(onDisk(path), ['after', 'kept', 'local']);
  });

  test('a file replaced within one tick of a coarse clock (every fingerprint field equal) is re-read', async () => {
    const path = freshPath();
    mkdirSync(dirname(path), { recursive: true });
    const fileWith = (host: string) =>
      JSON.stringify({ version: 1, machines: { box: { name: 'box', type: 'ssh', host } } });
    writeFileSync(path, fileWith('aaaa'));
    const reg = await MachineRegistry.open(path);
    // This kernel stamps fine-grained times; simulate a file system with whole-second timestamps, on
    // which an in-place rewrite of the same size keeps inode, size, mtime and ctime.
    const restore = coarseTimestamps(path);
    try {
      while (Date.now() % 1000 > 600) await new Promise((r) => setTimeout(r, 50)); // not at a second's edge
      writeFileSync(path, fileWith('aaaa'));
      assert.equal(reg.get('box').host, 'aaaa');
      writeFileSync(path, fileWith('bbbb')); // in place: same inode, same size, same second
      assert.equal(reg.get('box').host, 'bbbb', 'a stale snapshot was served');
    } finally {
      restore();
    }
  });
});

/** Makes fs report whole-second mtime/ctime for `path` (as FAT, HFS+ or some NFS servers do). */
function coarseTimestamps(path: string): () => void {
  const real = { statSync: fs.statSync, fstatSync: fs.fstatSync, lstatSync: fs.lstatSync };
  const truncate = <S extends fs.Stats | fs.BigIntStats | undefined>(st: S): S => {
    if (!st) return st;
    for (const f of ['mtime', 'ctime'] as const) {
      if (typeof st.mtimeMs === 'bigint') {
        const b = st as fs.BigIntStats;
        const ns = (b[`${f}Ns`] / 1_000_000_000n) * 1_000_000_000n;
        Object.defineProperty(b, `${f}Ns`, { value: ns });
        Object.defineProperty(b, `${f}Ms`, { value: ns / 1_000_000n });
      } else {
        const n = st as fs.Stats;
        Object.defineProperty(n, `${f}Ms`, { value: Math.floor(n[`${f}Ms`] / 1000) * 1000 });
      }
      Object.defineProperty(st, f, { value: new Date(Math.floor(st[f].getTime() / 1000) * 1000) });
    }
    return st;
  };
  const target = fs.realpathSync(path);
  let fd: number | undefined;
  const openSync = fs.openSync;
  Object.assign(fs, {
    openSync: (p: fs.PathLike, ...rest: unknown[]) => {
      const opened = (openSync as (...a: unknown[]) => number)(p, ...rest);
      if (String(p) === path || String(p) === target) fd = opened;
      return opened;
    },
    statSync: (p: fs.PathLike, o?: object) => {
      const st = (real.statSync as (...a: unknown[]) => fs.Stats)(p, o);
      return String(p) === path || String(p) === target ? truncate(st) : st;
    },
    fstatSync: (f: number, o?: object) => {
      const st = (real.fstatSync as (...a: unknown[]) => fs.Stats)(f, o);
      return f === fd ? truncate(st) : st;
    },
  });
  syncBuiltinESMExports();
  return () => {
    Object.assign(fs, real, { openSync });
    syncBuiltinESMExports();
  };
}

describe('writes from the wrong place fail fast, never deadlock', () => {
  test('update() while the caller holds withWriteLock(reg.path) and another batch is flushing', async () => {
    const path = freshPath();
    const reg = await MachineRegistry.open(path);
    await reg.add(ssh('seed'));
    let release!: () => void;
    const holding = new Promise<void>((resolve) => {
      release = resolve;
    });
    const holder = withWriteLock(path, async () => {
      await holding;
      await reg.update((d) => d.add(ssh('from-holder')));
    });
    await new Promise((resolve) => setImmediate(resolve));
    const queued = reg.add(ssh('queued')); // its batch waits for the lock the holder has
    await new Promise((resolve) => setImmediate(resolve));
    release();
    await within(Promise.all([holder, queued]), 10_000, 'holder and queued writer');
    assert.deepEqual(onDisk(path), ['from-holder', 'local', 'queued', 'seed']);
  });
});

describe('drafts and callbacks that outlive their update', () => {
  test('a draft used after its callback settled throws ERR_DRAFT_CLOSED and changes nothing', async () => {
    const path = freshPath();
    const reg = await MachineRegistry.open(path);
    let kept!: RegistryDraft;
    await reg.update((d) => {
      kept = d;
      d.add(ssh('real'));
    });
    assert.throws(() => kept.add(ssh('phantom')), { code: 'ERR_DRAFT_CLOSED' });
    assert.throws(() => kept.remove('real'), { code: 'ERR_DRAFT_CLOSED' });
    assert.equal(reg.has('phantom'), false);
    assert.equal(reg.has('real'), true);
    await reg.add(ssh('other'));
    assert.deepEqual(onDisk(path), ['local', 'other', 'real']);
  });

  test('a write from a timer started inside a finished update callback is an ordinary write', async () => {
    const reg = await MachineRegistry.open(freshPath());
    let later!: Promise<void>;
    let go!: () => void;
    const gate = new Promise<void>((resolve) => {
      go = resolve;
    });
    await reg.update(() => {
      later = gate.then(() => reg.add(ssh('from-timer')));
    });
    go();
    await later;
    assert.ok(reg.has('from-timer'));
  });

  test('a callback that waits for a write of its own batch fails after lockTimeout instead of hanging', async () => {
    const path = freshPath();
    const reg = await MachineRegistry.open(path, { lockTimeout: 300 });
    const earlier = reg.add(ssh('earlier')); // same tick: the same batch as the update below
    const waiting = reg.update(async (d) => {
      d.add(ssh('never'));
      await earlier;
    });
    await within(assert.rejects(waiting, { code: 'ERR_UPDATE_TIMEOUT' }), 10_000, 'the deadlocked update');
    await within(earlier, 10_000, 'the earlier add');
    assert.deepEqual(onDisk(path), ['earlier', 'local']);
    await within(reg.add(ssh('after')), 10_000, 'a later write');
  });
});

describe('a symlinked registry pointed elsewhere', () => {
  test('a write waiting for the lock while the link is retargeted goes to the new target, whole', async () => {
    const d = join(root, `retarget${++seq}`);
    mkdirSync(d, { recursive: true });
    const a = await MachineRegistry.open(join(d, 'a.json'));
    await a.add(ssh('only-in-a'));
    const c = await MachineRegistry.open(join(d, 'c.json'));
    await c.add(ssh('only-in-c'));
    symlinkSync('a.json', join(d, 'current.json'));
    const viaLink = await MachineRegistry.open(join(d, 'current.json'));
    const holder = fixture('hold.mjs', [join(d, 'a.json')]);
    await holder.waitFor('held');
    const adding = viaLink.add(ssh('acked')); // waits for a.json's lock, which the other process holds
    await new Promise((resolve) => setTimeout(resolve, 20)); // let it start waiting (not a handshake)
    rmSync(join(d, 'current.json'));
    symlinkSync('c.json', join(d, 'current.json'));
    holder.send('release');
    await adding;
    await holder.exited();
    assert.deepEqual(onDisk(join(d, 'a.json')), ['local', 'only-in-a'], 'the old target is untouched');
    assert.deepEqual(onDisk(join(d, 'c.json')), ['acked', 'local', 'only-in-c']);
    assert.ok(viaLink.has('acked'));
  });

  test('after a retarget, a write to the new target from inside an update through the link is re-entrant', async () => {
    const d = join(root, `retarget${++seq}`);
    mkdirSync(d, { recursive: true });
    symlinkSync('a.json', join(d, 'current.json'));
    const viaLink = await MachineRegistry.open(join(d, 'current.json'));
    await viaLink.add(ssh('seed'));
    rmSync(join(d, 'current.json'));
    symlinkSync('c.json', join(d, 'current.json'));
    const direct = await MachineRegistry.open(join(d, 'c.json'));
    await assert.rejects(
      viaLink.update(() => direct.add(ssh('nested'))),
      { code: 'ERR_REGISTRY_REENTRANT' },
    );
  });
});

describe('hostile files', () => {
  test('a FIFO at the registry path is an ERR_REGISTRY_IO, not a hang', async () => {
    const path = freshPath();
    mkdirSync(dirname(path), { recursive: true });
    execFileSync('mkfifo', [path]);
    await within(
      assert.rejects(
        MachineRegistry.open(path).then((r) => r.list()),
        { code: 'ERR_REGISTRY_IO' },
      ),
      5_000,
      'open on a FIFO',
    );
  });

  test('nesting 200,000 deep, or 20,000 deep in an unknown field: ERR_REGISTRY_CORRUPT, file untouched', async () => {
    for (const text of [
      '['.repeat(200_000) + ']'.repeat(200_000),
      `{"version":1,"machines":{},"x":${'['.repeat(20_000)}${']'.repeat(20_000)}}`,
    ]) {
      const path = freshPath();
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, text);
      const err = await MachineRegistry.open(path)
        .then(async (r) => {
          r.list();
          await r.add(ssh('x'));
        })
        .then(
          () => assert.fail('must fail'),
          (e: { code?: string; position?: number; stack?: string }) => e,
        );
      assert.equal(err.code, 'ERR_REGISTRY_CORRUPT', err.stack);
      assert.equal(typeof err.position, 'number');
      assert.equal(readFileSync(path, 'utf8'), text);
    }
  });

  test('a name or version nested 9,000 deep is an invalid entry or corruption, never a RangeError', async () => {
    const deep = `${'['.repeat(9000)}${']'.repeat(9000)}`;
    const path = freshPath();
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, `{"version":1,"machines":{"box":{"name":${deep},"type":"ssh","host":"b"}}}`);
    const reg = await MachineRegistry.open(path);
    assert.deepEqual(
      reg.invalid().map((e) => e.machine),
      ['box'],
    );
    writeFileSync(path, `{"version":${deep},"machines":{}}`);
    await assert.rejects(MachineRegistry.open(path), { code: 'ERR_REGISTRY_CORRUPT' });
  });

  test('a registry directory created by the first write is fsynced into its parent', async () => {
    const path = join(root, `durable${++seq}`, 'nested', 'machines.json');
    const synced: string[] = [];
    ops.syncDir = async (d: string) => {
      synced.push(d);
      return original.syncDir(d);
    };
    const reg = await MachineRegistry.open(path);
    await reg.add(ssh('x'));
    assert.ok(synced.includes(dirname(dirname(path))), `parent of the new dir not fsynced: ${synced}`);
    assert.ok(synced.includes(dirname(dirname(dirname(path)))), `grandparent not fsynced: ${synced}`);
  });
});
