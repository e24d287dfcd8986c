/** JsonFile in one process: the registry's guarantees for any JSON state file. Cross-process: test/multiprocess/store.test.ts. */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { afterEach, describe, test } from 'node:test';
import { scratchDir } from '../../test/scratch-dir.js';
import { ops } from '../atomic/_fs-ops.js';
import { withWriteLock } from '../filelock/index.js';
import { JsonFile } from './index.js';

const root = scratchDir('townlock-jsonfile-');
const original = { ...ops };
afterEach(() => Object.assign(ops, original));
let seq = 0;
const fresh = () => join(root, `j${++seq}`, 'state.json');
interface State {
  runs: number;
  names?: string[];
}
const open = (path: string, extra: object = {}) =>
  JsonFile.open<State>(path, { defaults: () => ({ runs: 0 }), ...extra });

describe('read and update', () => {
  test('defaults until the first update, which creates the file; update returns the callback result', async () => {
    const path = fresh();
    const state = await open(path);
    assert.deepEqual(state.read(), { runs: 0 });
    assert.equal(existsSync(path), false);
    const result = await state.update((draft) => {
      draft.runs++;
      return draft.runs * 10;
    });
    assert.equal(result, 10);
    assert.deepEqual(JSON.parse(readFileSync(path, 'utf8')), { runs: 1 });
    assert.deepEqual(state.read(), { runs: 1 });
  });

  test('a new file is created 0o644 less the umask, as the Go tool creates its files; an existing mode is kept', async () => {
    // The umask is read in a child: process.umask() without an argument is deprecated.
    const umask = Number.parseInt(execFileSync('sh', ['-c', 'umask'], { encoding: 'utf8' }).trim(), 8);
    const path = fresh();
    const state = await open(path);
    await state.update((d) => {
      d.runs = 1;
    });
    assert.equal(statSync(path).mode & 0o777, 0o644 & ~umask);
    chmodSync(path, 0o600);
    await state.update((d) => {
      d.runs = 2;
    });
    assert.equal(statSync(path).mode & 0o777, 0o600);
  });

  test('read() is a frozen committed snapshot: mutating it throws and changes nothing', async () => {
    const state = await open(fresh());
    await state.update((d) => {
      d.names = ['a'];
    });
    const snap = state.read();
    assert.throws(() => {
      (snap as State).runs = 99;
    }, TypeError);
    assert.throws(() => snap.names!.push('b'), TypeError);
    assert.deepEqual(state.read(), { runs: 0, names: ['a'] });
  });

  test('a callback that throws changes nothing; others in its batch still commit, in call order', async () => {
    const path = fresh();
    const state = await open(path);
    let renames = 0;
    ops.rename = (a, b) => {
      renames++;
      return original.rename(a, b);
    };
    const results = await Promise.allSettled([
      state.update((d) => {
        d.runs += 1;
      }),
      state.update((d) => {
        d.runs += 100;
        throw new Error('no');
      }),
      state.update((d) => {
        d.runs *= 3;
      }),
    ]);
    assert.deepEqual(
      results.map((r) => r.status),
      ['fulfilled', 'rejected', 'fulfilled'],
    );
    assert.equal(renames, 1, 'one batch, one rename');
    assert.equal(state.read().runs, 3);
    assert.equal(JSON.parse(readFileSync(path, 'utf8')).runs, 3);
  });

  test('changes inside a running callback are invisible to read() until committed', async () => {
    const state = await open(fresh());
    let inside: number | undefined;
    await state.update((d) => {
      d.runs = 5;
      inside = state.read().runs;
    });
    assert.equal(inside, 0);
    assert.equal(state.read().runs, 5);
  });

  test('another object on the same file sees committed changes without reload()', async () => {
    const path = fresh();
    const a = await open(path);
    const b = await open(path);
    await a.update((d) => {
      d.runs = 7;
    });
    assert.equal(b.read().runs, 7);
    await b.set({ runs: 8 });
    assert.equal(a.read().runs, 8);
    assert.equal((await a.reload()).runs, 8);
  });

  test('an update that changes nothing writes nothing', async () => {
    const path = fresh();
    const state = await open(path);
    await state.update((d) => {
      d.runs = 1;
    });
    let renames = 0;
    ops.rename = (a, b) => {
      renames++;
      return original.rename(a, b);
    };
    await state.update((d) => {
      d.runs = 1;
    });
    assert.equal(renames, 0);
  });
});

describe('validation and bad input', () => {
  test('validate refuses a bad result: that update fails with ERR_STORE_INVALID and the file is unchanged', async () => {
    const path = fresh();
    const state = await open(path, {
      validate: (v: unknown) => typeof (v as State).runs === 'number' && (v as State).runs >= 0,
    });
    await state.update((d) => {
      d.runs = 2;
    });
    const before = readFileSync(path, 'utf8');
    await assert.rejects(
      state.update((d) => {
        d.runs = -1;
      }),
      { code: 'ERR_STORE_INVALID' },
    );
    assert.equal(readFileSync(path, 'utf8'), before);
    assert.equal(state.read().runs, 2);
  });

  test('values JSON cannot hold are refused; functions and undefined fields are dropped as JSON drops them', async () => {
    const state = await open(fresh());
    await assert.rejects(
      state.update((d) => {
        (d as unknown as { big: bigint }).big = 1n;
      }),
      { code: 'ERR_STORE_INVALID' },
    );
    await state.update((d) => {
      (d as unknown as { f: unknown }).f = () => 1;
      (d as unknown as { u: unknown }).u = undefined;
    });
    assert.deepEqual(state.read(), { runs: 0 });
    const loop: Record<string, unknown> = {};
    loop.self = loop;
    await assert.rejects(state.set(loop as unknown as State), { code: 'ERR_INVALID_OPTION' });
  });

  test('bad arguments are ERR_INVALID_OPTION naming them', async () => {
    const path = fresh();
    await assert.rejects(JsonFile.open('', { defaults: () => 1 }), {
      code: 'ERR_INVALID_OPTION',
      message: /path/,
    });
    await assert.rejects(JsonFile.open(path, null as never), {
      code: 'ERR_INVALID_OPTION',
      message: /options/,
    });
    await assert.rejects(JsonFile.open(path, {} as never), {
      code: 'ERR_INVALID_OPTION',
      message: /defaults/,
    });
    await assert.rejects(JsonFile.open(path, { defaults: () => 1, fsync: 'yes' as never }), {
      code: 'ERR_INVALID_OPTION',
      message: /fsync/,
    });
    await assert.rejects(JsonFile.open(path, { defaults: () => 1, lockTimeout: 'x' as never }), {
      code: 'ERR_INVALID_OPTION',
      message: /timeout/,
    });
    await assert.rejects(JsonFile.open(path, { defaults: () => 1, validate: () => false }), {
      code: 'ERR_INVALID_OPTION',
      message: /defaults/,
    });
    const state = await open(path);
    await assert.rejects(state.update('x' as never), { code: 'ERR_INVALID_OPTION', message: /fn/ });
    assert.equal(existsSync(path), false);
  });
});

describe('bad files are never overwritten', () => {
  const cases: [string, string, string][] = [
    ['empty', '', 'ERR_STORE_CORRUPT'],
    ['truncated', '{"runs": 1, "na', 'ERR_STORE_CORRUPT'],
    ['nested 200,000 deep', '['.repeat(200_000) + ']'.repeat(200_000), 'ERR_STORE_CORRUPT'],
    ['refused by validate', '{"runs": -5}', 'ERR_STORE_INVALID'],
  ];
  for (const [what, content, code] of cases) {
    test(`${what}: ${code} on open and on update; bytes unchanged`, async () => {
      const path = fresh();
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, content);
      const options = { validate: (v: unknown) => (v as State).runs === undefined || (v as State).runs >= 0 };
      await assert.rejects(open(path, options), { code });
      const other = fresh();
      const state = await open(other, options);
      mkdirSync(dirname(other), { recursive: true });
      writeFileSync(other, content);
      await assert.rejects(
        state.update((d) => {
          d.runs = 1;
        }),
        { code },
      );
      assert.equal(readFileSync(other, 'utf8'), content);
      assert.deepEqual(
        readdirSync(dirname(other)).filter((n) => n !== '.gastown'),
        ['state.json'],
      );
    });
  }

  test('a corrupt file error carries the position', async () => {
    const path = fresh();
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, '{\n  "runs": tru\n}');
    await assert.rejects(open(path), {
      code: 'ERR_STORE_CORRUPT',
      position: 15,
      message: /line 2, column 14/,
    });
  });

  test('a FIFO or a directory at the path is ERR_STORE_IO, never a hang', async () => {
    const path = fresh();
    mkdirSync(dirname(path), { recursive: true });
    execFileSync('mkfifo', [path]);
    await assert.rejects(open(path), { code: 'ERR_STORE_IO' });
    const dir = fresh();
    mkdirSync(dir, { recursive: true });
    await assert.rejects(open(dir), { code: 'ERR_STORE_IO', message: /directory/ });
  });
});

describe('re-entrant writes', () => {
  test('an update from inside an update of the same file fails fast; under withWriteLock it commits in place', async () => {
    const path = fresh();
    const state = await open(path);
    const other = await open(path);
    await assert.rejects(
      state.update(() => other.update((d) => void d.runs++)),
      { code: 'ERR_STORE_REENTRANT' },
    );
    await withWriteLock(path, async () => {
      await state.update((d) => {
        d.runs = 42;
      });
    });
    assert.equal(JSON.parse(readFileSync(path, 'utf8')).runs, 42);
  });
});

describe('drafts', () => {
  test("a draft is only its callback's: changes made to it after the callback settled go nowhere", async () => {
    const path = fresh();
    const state = await open(path);
    let kept: State | undefined;
    const [, seen] = await Promise.all([
      state.update((d) => {
        kept = d;
        d.runs = 1;
      }),
      state.update(async (d) => {
        kept!.runs = 999; // the first callback's draft, after it settled, while the batch goes on
        kept!.names = ['late'];
        await null;
        return d.runs;
      }),
    ]);
    assert.equal(seen, 1, 'the next callback does not see them');
    assert.deepEqual(state.read(), { runs: 1 });
    assert.deepEqual(JSON.parse(readFileSync(path, 'utf8')), { runs: 1 });
    kept!.runs = 5; // after the commit too
    await state.update((d) => {
      d.names = [];
    });
    assert.deepEqual(state.read(), { runs: 1, names: [] });
  });
});

describe('cost of a batch', () => {
  test('a batch of ten updates clones the document once, not once per write; rollbacks stay per write', async () => {
    const path = fresh();
    const state = await open(path);
    await state.set({ runs: 0, names: ['x'] });
    const clone = globalThis.structuredClone;
    let clones = 0;
    globalThis.structuredClone = <T>(value: T, options?: Parameters<typeof structuredClone>[1]): T => {
      clones++;
      return clone(value, options);
    };
    let results: PromiseSettledResult<number>[];
    try {
      results = await Promise.allSettled(
        Array.from({ length: 10 }, (_, i) =>
          state.update((d) => {
            d.runs += 1;
            d.names!.push(`w${i}`);
            if (i === 0 || i === 4) throw new Error(`write ${i} fails`); // undone alone
            return d.runs;
          }),
        ),
      );
    } finally {
      globalThis.structuredClone = clone;
    }
    assert.deepEqual(
      results.map((r) => (r.status === 'fulfilled' ? r.value : 'failed')),
      ['failed', 1, 2, 3, 'failed', 4, 5, 6, 7, 8],
    );
    assert.deepEqual(state.read(), { runs: 8, names: ['x', 'w1', 'w2', 'w3', 'w5', 'w6', 'w7', 'w8', 'w9'] });
    assert.ok(clones <= 2, `${clones} structuredClone calls for one batch of ten writes`);
  });
});

describe('numbers JSON cannot hold', () => {
  test('a number that read as Infinity (1e400) is not written back as null: the update is refused', async () => {
    const path = fresh();
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, '{"runs": 0, "limit": 1e400, "deep": {"list": [1, -1e999]}}\n');
    const before = readFileSync(path);
    const state = await open(path);
    assert.equal((state.read() as unknown as { limit: number }).limit, Number.POSITIVE_INFINITY);
    await assert.rejects(
      state.update((d) => {
        d.runs++;
      }),
      { code: 'ERR_STORE_INVALID', message: /Infinity at limit/ },
    );
    assert.ok(readFileSync(path).equals(before), 'the file is unchanged');
    await assert.rejects(
      state.update((d) => {
        (d as unknown as { limit: number }).limit = 5;
      }),
      { code: 'ERR_STORE_INVALID', message: /-Infinity at deep\.list\[1\]/ },
    );
    await state.update((d) => {
      const x = d as unknown as { limit: number; deep: unknown };
      x.limit = 5;
      x.deep = {};
    });
    assert.deepEqual(state.read(), { runs: 0, limit: 5, deep: {} });
    await assert.rejects(
      state.update((d) => {
        d.runs = Number.NaN;
      }),
      { code: 'ERR_STORE_INVALID', message: /NaN at runs/ },
    );
    await assert.rejects(state.set({ runs: Number.NaN }), { code: 'ERR_INVALID_OPTION', message: /NaN/ });
  });
});

describe('typed errors', () => {
  test('a cyclic value is refused saying it is cyclic, by update() and set()', async () => {
    const state = await open(fresh());
    await assert.rejects(
      state.update((d) => {
        (d as unknown as { self: unknown }).self = d;
      }),
      { code: 'ERR_STORE_INVALID', message: /cyclic/ },
    );
    const loop: Record<string, unknown> = {};
    loop.self = loop;
    await assert.rejects(state.set(loop as unknown as State), {
      code: 'ERR_INVALID_OPTION',
      message: /cyclic/,
    });
  });

  test('OS errors are ERR_STORE_IO naming the path and the errno: symlink loop, lockDir a file, name too long', async () => {
    const d = dirname(fresh());
    mkdirSync(d, { recursive: true });
    symlinkSync('loop2', join(d, 'loop1'));
    symlinkSync('loop1', join(d, 'loop2'));
    await assert.rejects(open(join(d, 'loop1')), { code: 'ERR_STORE_IO', message: /loop1.*ELOOP/ });
    const later = await open(join(d, 'later.json'));
    await later.update((x) => {
      x.runs = 1;
    });
    rmSync(join(d, 'later.json'));
    symlinkSync('loop1', join(d, 'later.json'));
    const updating = later.update((x) => {
      x.runs = 2;
    });
    assert.ok(updating instanceof Promise, 'a promise, not a synchronous throw');
    await assert.rejects(updating, { code: 'ERR_STORE_IO', message: /later\.json.*ELOOP/ });
    await assert.rejects(later.reload(), { code: 'ERR_STORE_IO', message: /ELOOP/ });
    writeFileSync(join(d, 'afile'), 'x');
    const lockInFile = await open(join(d, 'k.json'), { lockDir: join(d, 'afile') });
    await assert.rejects(
      lockInFile.update((x) => {
        x.runs = 1;
      }),
      { code: 'ERR_STORE_IO', message: /k\.json.*afile.*ENOTDIR/ },
    );
    const long = await open(join(d, `${'n'.repeat(250)}.json`));
    await assert.rejects(
      long.update((x) => {
        x.runs = 1;
      }),
      { code: 'ERR_STORE_IO', message: /ENAMETOOLONG/ },
    );
  });
});
