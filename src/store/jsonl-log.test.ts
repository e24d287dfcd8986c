/** JsonlLog in one process: appends, reads, torn lines, repair, watch. Cross-process: test/multiprocess/store.test.ts. */
import assert from 'node:assert/strict';
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, test } from 'node:test';
import { scratchDir } from '../../test/scratch-dir.js';
import { ops } from '../atomic/_fs-ops.js';
import { JsonlLog, type TornLine } from './index.js';

const root = scratchDir('townlock-jsonl-');
const original = { ...ops };
afterEach(() => Object.assign(ops, original));
let seq = 0;
const fresh = () => join(root, `l${++seq}`, 'events.jsonl');
interface Event {
  n: number;
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
      [[tornAt, false, '{"n": 3, "half']],
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
