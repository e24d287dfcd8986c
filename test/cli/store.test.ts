/**
 * `townlock json get|set` and `townlock log append|tail`, run as a user runs them: the built CLI in
 * subprocesses, many at once where the claim is about concurrency.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { after, afterEach, describe, test } from 'node:test';
import { DIST, reapAll, start, tempDir } from '../multiprocess/helpers.js';

const BIN = resolve(DIST, '..', 'bin', 'townlock.js');
const tmp = tempDir('townlock-cli-store-');
after(tmp.remove);
afterEach(reapAll);
let seq = 0;
const fresh = (name: string) => join(tmp.dir, `${++seq}-${name}`);

function tl(args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    cwd: tmp.dir,
    env: { PATH: process.env.PATH, HOME: tmp.dir },
    encoding: 'utf8',
    timeout: 30_000,
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** Runs `count` townlock invocations at once, each with its own arguments; resolves with their exits. */
function parallel(argvs: string[][]): Promise<{ code: number | null; err: string }[]> {
  return Promise.all(
    argvs.map(
      (args) =>
        new Promise<{ code: number | null; err: string }>((done) => {
          const p = spawn(process.execPath, [BIN, ...args], {
            cwd: tmp.dir,
            stdio: ['ignore', 'ignore', 'pipe'],
          });
          let err = '';
          p.stderr.setEncoding('utf8').on('data', (c: string) => {
            err += c;
          });
          p.on('close', (code) => done({ code, err }));
        }),
    ),
  );
}

describe('json get / json set', () => {
  test('an OS error on write is in words, its errno once, never Node\u2019s raw text', () => {
    const r = tl(['json', 'set', '/proc/townlock-nope/x.json', 'a', '1']);
    assert.equal(r.code, 71);
    assert.equal(
      r.err,
      'townlock: Cannot write /proc/townlock-nope/x.json: no such file or directory, mkdir /proc/townlock-nope (ENOENT) [ERR_STORE_IO]\n',
    );
  });

  test('set creates the file and the objects along PATH; get reads values back by dot path and JSON Pointer', () => {
    const f = fresh('state.json');
    assert.equal(tl(['json', 'set', f, 'jobs.build', '{"status": "queued", "tries": 0}']).code, 0);
    assert.equal(tl(['json', 'set', f, '/jobs/build/status', '"done"']).code, 0);
    assert.equal(tl(['json', 'set', '--string', f, 'paths.a/b', 'x/y']).code, 0);
    assert.deepEqual(JSON.parse(readFileSync(f, 'utf8')), {
      jobs: { build: { status: 'done', tries: 0 } },
      paths: { 'a/b': 'x/y' },
    });
    const whole = tl(['json', 'get', f]);
    assert.equal(whole.code, 0);
    assert.deepEqual(JSON.parse(whole.out), JSON.parse(readFileSync(f, 'utf8')));
    assert.equal(tl(['json', 'get', f, 'jobs.build.status']).out, '"done"\n');
    assert.equal(tl(['json', 'get', '-r', f, 'jobs.build.status']).out, 'done\n');
    assert.equal(tl(['json', 'get', '--raw', f, '/paths/a~1b']).out, 'x/y\n');
    assert.equal(tl(['json', 'get', f, 'jobs.build.tries']).out, '0\n');
  });

  test('arrays: indexes read and write, the length appends; "." replaces the whole document', () => {
    const f = fresh('a.json');
    assert.equal(tl(['json', 'set', f, 'q', '[]']).code, 0);
    assert.equal(tl(['json', 'set', f, 'q.0', '"first"']).code, 0);
    assert.equal(tl(['json', 'set', f, 'q.1', '"second"']).code, 0);
    assert.equal(tl(['json', 'get', '-r', f, 'q.1']).out, 'second\n');
    const past = tl(['json', 'set', f, 'q.5', '1']);
    assert.equal(past.code, 64);
    assert.match(past.err, /array of 2/);
    assert.equal(tl(['json', 'set', f, '.', '[1, 2]']).code, 0);
    assert.deepEqual(JSON.parse(readFileSync(f, 'utf8')), [1, 2]);
  });

  test('missing value is exit 1, missing file 66, corrupt file 65 and never overwritten, bad VALUE 64', () => {
    const f = fresh('s.json');
    writeFileSync(f, '{"a": 1}\n');
    const none = tl(['json', 'get', f, 'b']);
    assert.equal(none.code, 1);
    assert.match(none.err, /has no value at "b" \[ERR_NOT_FOUND\]\n$/);
    assert.equal(tl(['json', 'get', fresh('absent.json')]).code, 66);

    const bad = tl(['json', 'set', f, 'b', 'done']);
    assert.equal(bad.code, 64);
    assert.match(bad.err, /VALUE "done" is not JSON.*--string/);
    const intoScalar = tl(['json', 'set', f, 'a.b', '2']);
    assert.equal(intoScalar.code, 64);
    assert.match(intoScalar.err, /a is not an object or array/);
    const emptyKey = tl(['json', 'set', f, 'a..b', '2']);
    assert.equal(emptyKey.code, 64);
    assert.equal(readFileSync(f, 'utf8'), '{"a": 1}\n', 'nothing written by a refused set');

    const corrupt = fresh('corrupt.json');
    writeFileSync(corrupt, '{"a": 1,, }');
    const set = tl(['json', 'set', corrupt, 'b', '2']);
    assert.equal(set.code, 65);
    assert.match(set.err, /ERR_STORE_CORRUPT/);
    assert.equal(tl(['json', 'get', corrupt]).code, 65);
    assert.equal(readFileSync(corrupt, 'utf8'), '{"a": 1,, }');
    assert.equal(tl(['json', 'set', f]).code, 64);
  });

  test('__proto__ and constructor are keys like any other; -r prints the raw string into a pipe', () => {
    const f = fresh('proto.json');
    assert.equal(tl(['json', 'set', f, '__proto__', '{"polluted": 1}']).code, 0);
    assert.equal(tl(['json', 'set', f, '__proto__.x', '1']).code, 0);
    assert.equal(tl(['json', 'set', f, 'constructor.prototype.y', '1']).code, 0);
    assert.deepEqual(JSON.parse(readFileSync(f, 'utf8')), {
      ['__proto__']: { polluted: 1, x: 1 },
      constructor: { prototype: { y: 1 } },
    });
    assert.equal(Object.hasOwn(JSON.parse(readFileSync(f, 'utf8')), '__proto__'), true);
    assert.equal(tl(['json', 'get', f, '__proto__.x']).out, '1\n');
    assert.equal(tl(['json', 'set', '--string', f, 'text', 'multi\nline\ttab\u001b']).code, 0);
    assert.equal(
      tl(['json', 'get', '-r', f, 'text']).out,
      'multi\nline\ttab\u001b\n',
      'as jq -r: unescaped into a pipe',
    );
  });

  test('a write error on stdout is one line and exit 71; a value starting with - goes after --', () => {
    const f = fresh('full.json');
    assert.equal(tl(['json', 'set', f, 'a', '1']).code, 0);
    const r = spawnSync('sh', ['-c', `"$0" "$1" json get "$2" > /dev/full`, process.execPath, BIN, f], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    assert.equal(r.status, 71);
    assert.equal(r.stderr, 'townlock: cannot write to stdout: no space left on device [ENOSPC]\n');
    const negative = tl(['json', 'set', f, 'a', '-1']);
    assert.equal(negative.code, 64);
    assert.match(negative.err, /put it after '--'/);
    assert.equal(tl(['json', 'set', f, 'a', '--', '-1']).code, 0);
    assert.equal(tl(['json', 'get', f, 'a']).out, '-1\n');
  });

  test('concurrent json set from many shells: every change is in the file (no lost update)', async () => {
    const f = fresh('shared.json');
    const procs = Number(process.env.TOWNLOCK_CLI_PROCS ?? 8);
    const argvs = Array.from({ length: procs }, (_, i) => ['json', 'set', f, `workers.w${i}`, `{"n": ${i}}`]);
    const exits = await parallel(argvs);
    assert.deepEqual(
      exits.map((e) => e.code),
      exits.map(() => 0),
      exits.map((e) => e.err).join(''),
    );
    const doc = JSON.parse(readFileSync(f, 'utf8')) as { workers: Record<string, { n: number }> };
    assert.equal(Object.keys(doc.workers).length, procs, JSON.stringify(doc));
    for (let i = 0; i < procs; i++) assert.deepEqual(doc.workers[`w${i}`], { n: i });
  });
});

describe('log append / log tail', () => {
  test('append writes one JSON line per entry; tail prints the last entries, one per line', () => {
    const f = fresh('events.jsonl');
    assert.equal(tl(['log', 'append', f, '{"type": "deploy"}', '2', '"three"']).code, 0);
    assert.equal(tl(['log', 'append', '--string', f, 'plain text']).code, 0);
    assert.equal(readFileSync(f, 'utf8'), '{"type":"deploy"}\n2\n"three"\n"plain text"\n');
    assert.equal(tl(['log', 'tail', f]).out, '{"type":"deploy"}\n2\n"three"\n"plain text"\n');
    assert.equal(tl(['log', 'tail', '-n', '2', f]).out, '"three"\n"plain text"\n');
    assert.equal(tl(['log', 'tail', '-n', '0', f]).out, '');
    const bad = tl(['log', 'append', f, '{oops']);
    assert.equal(bad.code, 64);
    assert.equal(tl(['log', 'tail', '-n', 'many', f]).code, 64);
    assert.equal(tl(['log', 'tail', fresh('absent.jsonl')]).code, 66);
    assert.equal(readFileSync(f, 'utf8').split('\n').length, 5, 'the refused append wrote nothing');
  });

  test('-n +N prints from the Nth entry; -n takes decimal numbers only; the last entries are read from the end', () => {
    const f = fresh('n.jsonl');
    assert.equal(tl(['log', 'append', f, '1', '2', '3', '4']).code, 0);
    assert.equal(tl(['log', 'tail', '-n', '+3', f]).out, '3\n4\n');
    assert.equal(tl(['log', 'tail', '-n', '+1', f]).out, '1\n2\n3\n4\n');
    for (const bad of ['', '0x2', '1e1', '-1', ' 2'])
      assert.equal(tl(['log', 'tail', '-n', bad, f]).code, 64, JSON.stringify(bad));
    // A torn line among the last ones: tail still prints COUNT entries, reaching further back.
    appendFileSync(f, 'garbage\n');
    assert.equal(tl(['log', 'append', f, '5']).code, 0);
    const r = tl(['log', 'tail', '-n', '2', f]);
    assert.equal(r.out, '4\n5\n');
    assert.match(r.err, /torn line at byte 8/);
    assert.equal(
      tl(['log', 'tail', '-n', '1', f]).err,
      '',
      'a torn line before the last entries is not read',
    );
  });

  test('tail -f ends when its reader goes away (| head -1)', async () => {
    const f = fresh('head.jsonl');
    assert.equal(tl(['log', 'append', f, '1', '2']).code, 0);
    const pipeline = start('sh', [
      '-c',
      `"$0" "$1" log tail -f "$2" | head -1; echo done`,
      process.execPath,
      BIN,
      f,
    ]);
    await pipeline.waitFor('1');
    // head exits after its line; townlock notices at its next write after that: append until it ends.
    const exited = pipeline.exited();
    let ended = false;
    void exited.then(() => {
      ended = true;
    });
    for (let i = 3; !ended && i < 100; i++) {
      assert.equal(tl(['log', 'append', f, String(i)]).code, 0);
      await Promise.race([exited, new Promise((r) => setTimeout(r, 100))]);
    }
    assert.equal(await exited, 0);
    assert.deepEqual(pipeline.lines, ['1', 'done']);
  });

  test('a control character in an entry is escaped in the output, never sent to the terminal', () => {
    const f = fresh('ctl.jsonl');
    assert.equal(tl(['log', 'append', f, '"bell\\u0007 csi\\u009b"']).code, 0);
    const out = tl(['log', 'tail', f]).out;
    assert.equal(out, '"bell\\u0007 csi\\u009b"\n');
  });

  test('a torn last line is reported with its offset, skipped, and the next append starts a new line', () => {
    const f = fresh('torn.jsonl');
    assert.equal(tl(['log', 'append', f, '1']).code, 0);
    appendFileSync(f, '{"half": tr'); // a writer that died mid-append
    const torn = tl(['log', 'tail', f]);
    assert.equal(torn.code, 0);
    assert.equal(torn.out, '1\n');
    assert.match(torn.err, /torn last line at byte 2 skipped/);
    assert.equal(tl(['log', 'append', f, '2']).code, 0);
    const after = tl(['log', 'tail', f]);
    assert.equal(after.out, '1\n2\n');
    assert.match(after.err, /torn line at byte 2 skipped/);
  });

  test('concurrent appends from many shells: every entry whole, on its own line', async () => {
    const f = fresh('many.jsonl');
    const procs = Number(process.env.TOWNLOCK_CLI_PROCS ?? 8);
    const big = 'x'.repeat(70_000); // larger than a pipe buffer: one write(2) is not atomic for it alone
    const exits = await parallel(
      Array.from({ length: procs }, (_, i) => [
        'log',
        'append',
        f,
        `{"p": ${i}, "pad": "${big}"}`,
        `{"p": ${i}, "second": true}`,
      ]),
    );
    assert.ok(
      exits.every((e) => e.code === 0),
      exits.map((e) => e.err).join(''),
    );
    const lines = readFileSync(f, 'utf8').split('\n');
    assert.equal(lines.pop(), '');
    assert.equal(lines.length, procs * 2);
    const seen = lines.map((l) => JSON.parse(l) as { p: number; pad?: string; second?: boolean });
    // Each invocation's entries are adjacent and in order: one locked append.
    for (let i = 0; i < seen.length; i += 2) {
      assert.equal(seen[i]!.pad, big);
      assert.deepEqual(seen[i + 1], { p: seen[i]!.p, second: true });
    }
    assert.equal(new Set(seen.map((s) => s.p)).size, procs);
  });

  test('tail -f prints entries appended by other processes as they arrive, and exits 143 on SIGTERM', async () => {
    const f = fresh('follow.jsonl');
    assert.equal(tl(['log', 'append', f, '"old"']).code, 0);
    const follower = start(process.execPath, [BIN, 'log', 'tail', '-f', '-n', '1', f]);
    await follower.waitFor('"old"');
    assert.equal(tl(['log', 'append', f, '{"n": 1}']).code, 0);
    await follower.waitFor('{"n":1}');
    assert.equal(tl(['log', 'append', f, '2', '3']).code, 0);
    await follower.waitFor('3');
    follower.proc.kill('SIGTERM');
    assert.equal(await follower.exited(), 143);
    assert.deepEqual(follower.lines, ['"old"', '{"n":1}', '2', '3']);
  });

  test('tail -f reports a torn line once, though the follow reads it again, and goes on', async () => {
    const f = fresh('torn-follow.jsonl');
    assert.equal(tl(['log', 'append', f, '1']).code, 0);
    appendFileSync(f, '{"half');
    const follower = start(process.execPath, [BIN, 'log', 'tail', '-f', f]);
    await follower.waitFor('1');
    await follower.waitForErr(/torn last line at byte 2/);
    assert.equal(tl(['log', 'append', f, '2']).code, 0);
    await follower.waitFor('2');
    appendFileSync(f, 'not json\n');
    assert.equal(tl(['log', 'append', f, '3']).code, 0);
    await follower.waitFor('3');
    follower.proc.kill('SIGTERM');
    assert.equal(await follower.exited(), 143);
    assert.deepEqual(follower.lines, ['1', '2', '3']);
    const warnings = follower.stderr().trim().split('\n');
    assert.equal(warnings.length, 2, follower.stderr());
    // "1\n" + '{"half' closed by the append with NUL and newline (8 bytes) + "2\n": the bad line is at 12.
    assert.match(warnings[1]!, /torn line at byte 12 skipped/);
  });

  test('tail -f on a log that does not exist yet waits for it', async () => {
    const f = fresh('later.jsonl');
    const follower = start(process.execPath, [BIN, 'log', 'tail', '-f', f]);
    // The follower has no output to wait on before it watches; an append before that is read from the
    // start (offset 0) all the same, so the order does not matter.
    assert.equal(tl(['log', 'append', f, '"first"']).code, 0);
    await follower.waitFor('"first"');
    follower.proc.kill('SIGINT');
    assert.equal(await follower.exited(), 130);
  });
});
