/** JsonlLog in one process: appends, reads, torn lines, repair, watch. Cross-process: test/multiprocess/store.test.ts. */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs, {
  appendFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  truncateSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { after, afterEach, describe, test } from 'node:test';
import { fixture, reapAll } from '../../test/multiprocess/helpers.js';
import { inotifyWatches, scratchDir } from '../../test/scratch-dir.js';
import { ops } from '../atomic/_fs-ops.js';
import { JsonlLog, type TornLine } from './index.js';

const root = scratchDir('townlock-jsonl-');
const original = { ...ops };
/** Watchers a test started: stopped after it, even when it failed half way. */
const watchers = new Set<AbortController>();
afterEach(() => {
  Object.assign(ops, original);
  for (const c of watchers) c.abort();
  watchers.clear();
});
after(reapAll);
let seq = 0;
const fresh = () => join(root, `l${++seq}`, 'events.jsonl');
interface Event {
  n: number;
}
/** Resolves once `check()` holds, looking every 5 ms; rejects after `ms` (waits for a state, not a time). */
const until = async (check: () => boolean, ms: number, what: string) => {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`deadline passed waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
};
/**
 * Watches `log` in the background; `seen` fills as entries arrive and `reach(n)` resolves once n were
 * seen (rejecting after 10 s). `stop()` aborts and waits for the loop to end.
 */
function watcher<T>(log: JsonlLog<T>, options: { from?: number; onTorn?: (t: TornLine) => void } = {}) {
  const controller = new AbortController();
  watchers.add(controller);
  const seen: T[] = [];
  const waiters: { n: number; resolve: () => void }[] = [];
  const loop = (async () => {
    for await (const e of log.watch({ ...options, signal: controller.signal })) {
      seen.push(e);
      for (const w of waiters.filter((w) => seen.length >= w.n)) w.resolve();
    }
  })();
  return {
    seen,
    reach: (n: number) =>
      Promise.race([
        new Promise<void>((resolve) => (seen.length >= n ? resolve() : waiters.push({ n, resolve }))),
        new Promise<never>((_, reject) =>
          setTimeout(
            () => reject(new Error(`watcher saw ${JSON.stringify(seen)}, not ${n}`)),
            10_000,
          ).unref(),
        ),
      ]),
    stop: async () => {
      controller.abort();
      await loop;
    },
  };
}
/** Collects an async iterable. */
const all = async <T>(it: AsyncIterable<T>) => {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
};

describe('append and read', () => {
  test('one entry or an array per call, one line each, in call order; offsets returned', async () => {
    const path = fresh();
    const log = await JsonlLog.open<Event>(path);
    assert.equal(existsSync(path), false);
    const first = await log.append({ n: 1 });
    const second = await log.append([{ n: 2 }, { n: 3 }]);
    assert.equal(first, 0);
    assert.equal(second, '{"n":1}\n'.length);
    assert.equal(readFileSync(path, 'utf8'), '{"n":1}\n{"n":2}\n{"n":3}\n');
    assert.deepEqual(await all(log.read()), [{ n: 1 }, { n: 2 }, { n: 3 }]);
    const entries = await all(log.entries());
    assert.deepEqual(
      entries.map((e) => [e.offset, e.end]),
      [
        [0, 8],
        [8, 16],
        [16, 24],
      ],
    );
    assert.deepEqual(await all(log.read({ from: entries[1]!.end })), [{ n: 3 }]);
  });

  test('concurrent appends in one process are one write and one fsync, in call order', async () => {
    const path = fresh();
    const log = await JsonlLog.open<Event>(path);
    await log.append({ n: 0 }); // creates the file
    let syncs = 0;
    ops.sync = (fd) => {
      syncs++;
      return original.sync(fd);
    };
    const offsets = await Promise.all(Array.from({ length: 50 }, (_, i) => log.append({ n: i + 1 })));
    assert.deepEqual(
      (await all(log.read())).map((e) => e.n),
      Array.from({ length: 51 }, (_, i) => i),
    );
    assert.deepEqual(
      offsets,
      [...offsets].sort((a, b) => a - b),
    );
    assert.equal(new Set(offsets).size, 50);
    assert.equal(syncs, 1, 'fifty concurrent appends, one fsync');
  });

  test('a missing log reads as empty; bad arguments are ERR_INVALID_OPTION', async () => {
    const log = await JsonlLog.open<Event>(fresh());
    assert.deepEqual(await all(log.read()), []);
    await assert.rejects(log.append(undefined as never), { code: 'ERR_INVALID_OPTION', message: /entry/ });
    await assert.rejects(log.append([{ n: 1 }, 2n] as never), {
      code: 'ERR_INVALID_OPTION',
      message: /entry\[1\]/,
    });
    await assert.rejects(all(log.read({ from: -1 })), { code: 'ERR_INVALID_OPTION', message: /from/ });
    await assert.rejects(JsonlLog.open(''), { code: 'ERR_INVALID_OPTION' });
    await assert.rejects(JsonlLog.open(fresh(), { mode: 99999 }), {
      code: 'ERR_INVALID_OPTION',
      message: /mode/,
    });
  });

  test('from must be a line start', async () => {
    const path = fresh();
    const log = await JsonlLog.open<Event>(path);
    await log.append([{ n: 1 }, { n: 2 }]);
    await assert.rejects(all(log.read({ from: 3 })), { code: 'ERR_INVALID_OPTION', message: /line start/ });
  });
});

describe('torn lines: detected, reported with their offset, never yielded, never dropped silently', () => {
  test('a torn tail (crash mid-append) is reported after every whole entry; the next append isolates it', async () => {
    const path = fresh();
    const log = await JsonlLog.open<Event>(path);
    await log.append([{ n: 1 }, { n: 2 }]);
    appendFileSync(path, '{"n": 3, "half'); // what a writer killed mid-write leaves
    const tornAt = '{"n":1}\n{"n":2}\n'.length;
    const seen: number[] = [];
    await assert.rejects(
      (async () => {
        for await (const e of log.read()) seen.push(e.n);
      })(),
      { code: 'ERR_LOG_TORN', offset: tornAt, tail: true },
    );
    assert.deepEqual(seen, [1, 2], 'every whole entry before it was read');
    const torn: TornLine[] = [];
    assert.deepEqual(await all(log.read({ onTorn: (t) => torn.push(t) })), [{ n: 1 }, { n: 2 }]);
    assert.deepEqual(
      torn.map((t) => [t.offset, t.tail]),
      [[tornAt, true]],
    );
    // Appending after it must not glue the new entry onto the torn bytes.
    await log.append({ n: 4 });
    const after: TornLine[] = [];
    assert.deepEqual(await all(log.read({ onTorn: (t) => after.push(t) })), [{ n: 1 }, { n: 2 }, { n: 4 }]);
    assert.deepEqual(
      after.map((t) => [t.offset, t.tail, t.text]),
      [[tornAt, false, '{"n": 3, "half\u0000']],
      'closed by the append with a NUL byte, so it can never parse',
    );
    assert.deepEqual((await log.check()).entries, 3);
  });

  test('repair() moves torn lines to .torn byte for byte and only when asked', async () => {
    const path = fresh();
    const log = await JsonlLog.open<Event>(path);
    await log.append({ n: 1 });
    appendFileSync(path, Buffer.from([0x7b, 0xff, 0x22, 0x0a])); // a line that is not JSON (nor UTF-8)
    await log.append({ n: 2 });
    appendFileSync(path, '{"n":');
    const { entries, torn } = await log.check();
    assert.equal(entries, 2);
    assert.equal(torn.length, 2);
    assert.ok(readFileSync(path).includes(Buffer.from([0xff])), 'reading never repairs');
    const removed = await log.repair();
    assert.deepEqual(
      removed.map((t) => t.offset),
      torn.map((t) => t.offset),
    );
    assert.equal(readFileSync(path, 'utf8'), '{"n":1}\n{"n":2}\n');
    const aside = readFileSync(`${path}.torn`, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.deepEqual(Buffer.from(aside[0].bytes, 'base64'), Buffer.from([0x7b, 0xff, 0x22, 0x0a]));
    assert.equal(Buffer.from(aside[1].bytes, 'base64').toString(), '{"n":');
    assert.deepEqual(await log.repair(), [], 'nothing left to repair');
  });

  test('a failed fsync rejects the append with ERR_STORE_IO', async () => {
    const path = fresh();
    const log = await JsonlLog.open<Event>(path);
    await log.append({ n: 1 });
    ops.sync = async () => {
      throw Object.assign(new Error('injected EIO'), { code: 'EIO' });
    };
    await assert.rejects(log.append({ n: 2 }), { code: 'ERR_STORE_IO', message: /EIO/ });
  });
});

describe('watch', () => {
  test('yields entries appended after it started, woken by the append, until aborted', async () => {
    const path = fresh();
    const log = await JsonlLog.open<Event>(path);
    await log.append({ n: 0 }); // before the watch: not yielded
    const controller = new AbortController();
    const seen: number[] = [];
    let notify!: () => void;
    let wanted = 0;
    const reached = () => new Promise<void>((resolve) => (notify = resolve));
    const watching = (async () => {
      for await (const e of log.watch({ signal: controller.signal })) {
        seen.push(e.n);
        if (seen.length === wanted) notify();
      }
    })();
    for (let i = 1; i <= 3; i++) {
      wanted = i;
      const got = reached();
      await log.append({ n: i });
      await got;
    }
    controller.abort();
    await watching;
    assert.deepEqual(seen, [1, 2, 3]);
  });

  test('from: 0 replays the file first; a torn tail is reported once a writer clearly is not finishing it', async () => {
    const path = fresh();
    const log = await JsonlLog.open<Event>(path);
    await log.append({ n: 1 });
    appendFileSync(path, '{"n":');
    const controller = new AbortController();
    const torn: TornLine[] = [];
    const seen: number[] = [];
    const watching = (async () => {
      for await (const e of log.watch({
        from: 0,
        signal: controller.signal,
        onTorn: (t) => {
          torn.push(t);
          void log.append({ n: 2 });
        },
      })) {
        seen.push(e.n);
        if (e.n === 2) controller.abort();
      }
    })();
    await watching;
    assert.deepEqual(seen, [1, 2]);
    assert.equal(torn.length, 1);
  });
});

describe('a torn tail stays torn', () => {
  test('a torn fragment that happens to parse ("12" of "12345") never becomes an entry', async () => {
    const path = fresh();
    const log = await JsonlLog.open<number>(path);
    await log.append([1, 2]);
    await log.append(12345);
    truncateSync(path, statSync(path).size - 4); // "1\n2\n12": what a power cut can leave
    assert.deepEqual(
      (await log.check()).torn.map((t) => [t.offset, t.tail]),
      [[4, true]],
    );
    await log.append(3);
    const torn: TornLine[] = [];
    assert.deepEqual(await all(log.read({ onTorn: (t) => torn.push(t) })), [1, 2, 3]);
    assert.deepEqual(
      torn.map((t) => t.offset),
      [4],
      'still reported at its offset',
    );
    await assert.rejects(all(log.read()), { code: 'ERR_LOG_TORN', offset: 4 });
    const removed = await log.repair();
    assert.deepEqual(
      removed.map((t) => t.offset),
      [4],
    );
    assert.equal(readFileSync(path, 'utf8'), '1\n2\n3\n');
    const aside = JSON.parse(readFileSync(`${path}.torn`, 'utf8').trim());
    assert.ok(Buffer.from(aside.bytes, 'base64').toString().startsWith('12'), 'its bytes are kept');
  });
});

describe('reading positions', () => {
  test('watch({from}) is validated like read(): a mid-line offset is ERR_INVALID_OPTION', async () => {
    const path = fresh();
    const log = await JsonlLog.open<Event>(path);
    await log.append([{ n: 1 }, { n: 2 }]);
    const it = log.watch({ from: 3 });
    await assert.rejects(it.next(), { code: 'ERR_INVALID_OPTION', message: /line start/ });
  });

  test('from past the end of the file is ERR_INVALID_OPTION for read() and watch()', async () => {
    const path = fresh();
    const log = await JsonlLog.open<Event>(path);
    await log.append([{ n: 1 }]);
    const size = statSync(path).size;
    await assert.rejects(all(log.read({ from: size + 8 })), { code: 'ERR_INVALID_OPTION', message: /from/ });
    await assert.rejects(log.watch({ from: size + 8 }).next(), { code: 'ERR_INVALID_OPTION' });
    const missing = await JsonlLog.open<Event>(fresh());
    await assert.rejects(all(missing.read({ from: 8 })), { code: 'ERR_INVALID_OPTION' });
    assert.deepEqual(await all(log.read({ from: size })), [], 'the end itself is a line start');
  });

  test('a line of 8 MB is read in one pass (each byte copied a bounded number of times)', async () => {
    const path = fresh();
    const log = await JsonlLog.open<string>(path);
    const big = 'x'.repeat(8 << 20);
    await log.append([big, 'after']);
    const concat = Buffer.concat;
    let copied = 0;
    Buffer.concat = ((list: readonly Uint8Array[], length?: number) => {
      const out = concat(list, length);
      copied += out.length;
      return out;
    }) as typeof Buffer.concat;
    try {
      const got = await all(log.read());
      assert.equal(got[0]!.length, big.length);
      assert.equal(got[1], 'after');
    } finally {
      Buffer.concat = concat;
    }
    assert.ok(
      copied <= 2 * statSync(path).size,
      `copied ${copied} bytes for a ${statSync(path).size}-byte file`,
    );
  });
});

describe('watch follows the file', () => {
  // Each change below is made with synchronous calls, so the watcher cannot look half way through it.
  test('rotation by rename: the new file is read from its start', async () => {
    const path = fresh();
    const log = await JsonlLog.open<Event>(path);
    await log.append([{ n: 1 }, { n: 2 }, { n: 3 }]);
    const w = watcher(log);
    await log.append({ n: 4 });
    await w.reach(1);
    renameSync(path, `${path}.1`);
    writeFileSync(path, '{"n":10}\n{"n":11}\n{"n":12}\n{"n":13}\n{"n":14}\n{"n":15}\n');
    await w.reach(7);
    await w.stop();
    assert.deepEqual(
      w.seen.map((e) => e.n),
      [4, 10, 11, 12, 13, 14, 15],
    );
  });

  test('delete and recreate, truncate and rewrite longer, truncate shorter: each read from the start', async () => {
    const path = fresh();
    const log = await JsonlLog.open<Event>(path);
    await log.append([{ n: 1 }, { n: 2 }]);
    const w = watcher(log);
    await log.append({ n: 3 });
    await w.reach(1);
    unlinkSync(path);
    writeFileSync(path, '{"n":20}\n{"n":21}\n{"n":22}\n{"n":23}\n');
    await w.reach(5);
    truncateSync(path, 0); // same inode, rewritten past the old position
    appendFileSync(path, '{"n":30}\n{"n":31}\n{"n":32}\n{"n":33}\n{"n":34}\n');
    await w.reach(10);
    truncateSync(path, 0); // same inode, shorter than the position
    appendFileSync(path, '{"n":40}\n');
    await w.reach(11);
    await w.stop();
    assert.deepEqual(
      w.seen.map((e) => e.n),
      [3, 20, 21, 22, 23, 30, 31, 32, 33, 34, 40],
    );
  });

  test('repair() by another handle replaces the file: the watcher reads the new file from its start', async () => {
    const path = fresh();
    const log = await JsonlLog.open<Event>(path);
    await log.append({ n: 1 });
    appendFileSync(path, '{"torn":\n');
    await log.append({ n: 2 });
    const torn: TornLine[] = [];
    const w = watcher(log, { onTorn: (t) => torn.push(t) });
    await log.append({ n: 3 });
    await w.reach(1);
    const other = await JsonlLog.open<Event>(path);
    await other.repair();
    await other.append([{ n: 4 }, { n: 5 }]);
    await w.reach(6);
    await w.stop();
    assert.deepEqual(
      w.seen.map((e) => e.n),
      [3, 1, 2, 3, 4, 5],
      'the replaced file is read again from 0',
    );
    assert.deepEqual(torn, []);
  });

  test('a log that does not exist yet is watched by file events once it appears', async () => {
    const path = fresh();
    mkdirSync(dirname(path), { recursive: true }); // the directory exists: its events show the file appear
    const log = await JsonlLog.open<Event>(path);
    const before = inotifyWatches();
    const w = watcher(log);
    await log.append({ n: 1 }); // creates the file
    await w.reach(1);
    assert.ok(inotifyWatches() > before, 'the watcher holds a file watch');
    await log.append({ n: 2 });
    await w.reach(2);
    await w.stop();
    assert.deepEqual(
      w.seen.map((e) => e.n),
      [1, 2],
    );
    await until(() => inotifyWatches() === before, 5_000, 'the watch to be closed');
  });

  test('more than ten watchers sharing one AbortSignal: no MaxListenersExceededWarning', async () => {
    const path = fresh();
    const log = await JsonlLog.open<Event>(path);
    await log.append({ n: 0 });
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    try {
      const controller = new AbortController();
      const loops = Array.from({ length: 12 }, async () => {
        const seen: Event[] = [];
        for await (const e of log.watch({ signal: controller.signal })) seen.push(e);
        return seen;
      });
      await log.append({ n: 1 });
      controller.abort();
      await Promise.all(loops);
      await new Promise((r) => setImmediate(r)); // warnings are emitted on the next tick
    } finally {
      process.off('warning', onWarning);
    }
    assert.deepEqual(
      warnings.map((w) => w.name),
      [],
    );
  });
});

describe('symlinks and hostile files', () => {
  test('an append waiting for the lock while the symlinked log is retargeted goes to the new target', async () => {
    const d = dirname(fresh());
    mkdirSync(d, { recursive: true });
    writeFileSync(join(d, 'a.jsonl'), '');
    writeFileSync(join(d, 'b.jsonl'), '');
    symlinkSync('a.jsonl', join(d, 'cur.jsonl'));
    const log = await JsonlLog.open<Event>(join(d, 'cur.jsonl'));
    const holder = fixture('hold.mjs', [join(d, 'a.jsonl')]);
    await holder.waitFor('held');
    const before = inotifyWatches();
    const appending = log.append({ n: 1 });
    await until(() => inotifyWatches() > before, 10_000, 'the append to wait for the lock');
    rmSync(join(d, 'cur.jsonl'));
    symlinkSync('b.jsonl', join(d, 'cur.jsonl'));
    holder.send('release');
    assert.equal(await appending, 0);
    await holder.exited();
    assert.equal(readFileSync(join(d, 'a.jsonl'), 'utf8'), '', 'the old target is untouched');
    assert.equal(readFileSync(join(d, 'b.jsonl'), 'utf8'), '{"n":1}\n');
  });

  test('repair() through a symlink puts <real file>.torn beside the real file', async () => {
    const d = dirname(fresh());
    mkdirSync(d, { recursive: true });
    writeFileSync(join(d, 'real.jsonl'), '{"n":1}\nxx\n');
    symlinkSync('real.jsonl', join(d, 'link.jsonl'));
    const log = await JsonlLog.open<Event>(join(d, 'link.jsonl'));
    assert.equal((await log.repair()).length, 1);
    assert.ok(existsSync(join(d, 'real.jsonl.torn')));
    assert.equal(existsSync(join(d, 'link.jsonl.torn')), false);
    assert.ok(fs.lstatSync(join(d, 'link.jsonl')).isSymbolicLink(), 'the link stays a link');
    assert.equal(readFileSync(join(d, 'real.jsonl'), 'utf8'), '{"n":1}\n');
  });

  test('a FIFO planted at the path is refused without being opened, by append() and read()', async () => {
    const path = fresh();
    const log = await JsonlLog.open<Event>(path);
    mkdirSync(dirname(path), { recursive: true });
    execFileSync('mkfifo', [path]);
    const opened: string[] = [];
    const { openSync } = fs;
    const promisesOpen = fs.promises.open;
    fs.openSync = (...args: Parameters<typeof fs.openSync>) => {
      opened.push(String(args[0]));
      return openSync(...args);
    };
    fs.promises.open = (...args: Parameters<typeof fs.promises.open>) => {
      opened.push(String(args[0]));
      return promisesOpen(...args);
    };
    try {
      await assert.rejects(log.append({ n: 1 }), { code: 'ERR_STORE_IO', message: /not a regular file/ });
      await assert.rejects(all(log.read()), { code: 'ERR_STORE_IO', message: /not a regular file/ });
    } finally {
      fs.openSync = openSync;
      fs.promises.open = promisesOpen;
    }
    assert.deepEqual(
      opened.filter((p) => p === path),
      [],
    );
  });

  test('OS errors are ERR_STORE_IO naming the path and the errno: symlink loop, a parent that is a file, a lockDir that is a file, a name too long', async () => {
    const d = dirname(fresh());
    mkdirSync(d, { recursive: true });
    symlinkSync('loop2', join(d, 'loop1'));
    symlinkSync('loop1', join(d, 'loop2'));
    await assert.rejects(JsonlLog.open(join(d, 'loop1')), { code: 'ERR_STORE_IO', message: /loop1.*ELOOP/ });
    writeFileSync(join(d, 'afile'), 'x');
    await assert.rejects(
      (async () => {
        const log = await JsonlLog.open(join(d, 'afile', 'x.jsonl'));
        await log.append(1);
      })(),
      { code: 'ERR_STORE_IO', message: /afile\/x\.jsonl.*ENOTDIR/ },
    );
    const underFileLock = await JsonlLog.open(join(d, 'y.jsonl'), { lockDir: join(d, 'afile') });
    await assert.rejects(underFileLock.append(1), { code: 'ERR_STORE_IO', message: /y\.jsonl.*ENOTDIR/ });
    const long = await JsonlLog.open(join(d, `${'n'.repeat(249)}.jsonl`));
    await assert.rejects(long.append(1), { code: 'ERR_STORE_IO', message: /ENAMETOOLONG/ });
    await assert.rejects(long.repair(), { code: 'ERR_STORE_IO', message: /ENAMETOOLONG/ });
  });

  test('a cyclic entry is refused saying so', async () => {
    const log = await JsonlLog.open<unknown>(fresh());
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    await assert.rejects(log.append(cyclic), { code: 'ERR_INVALID_OPTION', message: /cyclic/ });
  });
});
