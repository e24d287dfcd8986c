/**
 * exec's stream plumbing without a process: collectExec with stand-in streams (what is delivered, when,
 * paused, collected or not) and the filter that takes SSH's pid marker out of stderr as it streams.
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { PassThrough } from 'node:stream';
import { describe, test } from 'node:test';
import { setImmediate as tick } from 'node:timers/promises';
import { collectExec, type RunningCommand } from './_exec.js';
import { PidMarker } from './_remote-kill.js';

/** A running command made of PassThrough streams; the test plays the command. */
function fakeChild() {
  const events = new EventEmitter();
  const killed: string[] = [];
  const child = Object.assign(events, {
    stdin: new PassThrough(),
    stdout: new PassThrough(),
    stderr: new PassThrough(),
    kill: (signal?: string) => killed.push(signal ?? 'SIGTERM'),
  });
  return { child, running: child as unknown as RunningCommand, killed };
}

/** Whether `p` has settled by the next turns of the event loop. */
async function settledSoon(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  p.then(
    () => {
      done = true;
    },
    () => {
      done = true;
    },
  );
  for (let i = 0; i < 5; i++) await tick();
  return done;
}

describe('collectExec with onStdout/onStderr', () => {
  test('each chunk goes to the callback as it arrives, the same Buffer, and nothing is collected', async () => {
    const { child, running } = fakeChild();
    const got: Buffer[] = [];
    const result = collectExec('m', running, { onStdout: (c) => void got.push(c) });
    const chunks = [Buffer.from('one'), Buffer.alloc(1 << 20, 7), Buffer.from('three')];
    for (const [i, chunk] of chunks.entries()) {
      child.stdout.write(chunk);
      await tick();
      assert.equal(got.length, i + 1, 'delivered before the next chunk is written');
      assert.equal(got[i], chunk, 'the very Buffer, not a copy gathered with others');
    }
    child.stdout.end();
    child.stderr.end('collected, no callback');
    await tick();
    child.emit('close', 0, null);
    assert.deepEqual(await result, { stdout: '', stderr: 'collected, no callback', code: 0 });
  });

  test('a callback promise pauses its stream until it settles; exec waits for the last one', async () => {
    const { child, running } = fakeChild();
    const pending: (() => void)[] = [];
    const got: string[] = [];
    const result = collectExec('m', running, {
      onStdout: (c) => {
        got.push(c.toString());
        return new Promise<void>((resolve) => pending.push(resolve));
      },
    });
    child.stdout.write('a');
    await tick();
    assert.deepEqual(got, ['a']);
    assert.equal(child.stdout.isPaused(), true, 'paused while the consumer is busy');
    child.stdout.write('b');
    child.stdout.end();
    child.stderr.end();
    child.emit('close', 0, null);
    await tick();
    assert.deepEqual(got, ['a'], 'nothing more until the promise settles');
    pending.shift()!();
    await tick();
    assert.deepEqual(got, ['a', 'b']);
    assert.equal(await settledSoon(result), false, 'the last chunk is still being consumed');
    pending.shift()!();
    assert.deepEqual(await result, { stdout: '', stderr: '', code: 0 });
  });

  test('a throwing callback kills the command and rejects with its error', async () => {
    const { child, running, killed } = fakeChild();
    const boom = new Error('boom');
    const result = collectExec('m', running, {
      onStderr: () => {
        throw boom;
      },
    });
    child.stderr.write('x');
    await assert.rejects(result, (e) => e === boom);
    assert.deepEqual(killed, ['SIGKILL']);
  });

  test('SSH: close before stderr has ended; the marker filter runs on streamed and collected stderr', async () => {
    const marker = new PidMarker('ab12');
    for (const stream of [true, false]) {
      const { child, running } = fakeChild();
      let err = '';
      const result = collectExec(
        'm',
        running,
        stream
          ? {
              onStderr: (c) => {
                err += c.toString('latin1');
              },
            }
          : {},
        marker.filter(),
      );
      child.stderr.write('rc\n\x1etownlock-pid-ab');
      await tick();
      if (stream) assert.equal(err, 'rc\n', 'only the possible start of the marker is held back');
      child.stderr.write('12:4242\nerr 1\n');
      await tick();
      if (stream) assert.equal(err, 'rc\nerr 1\n');
      child.stdout.end();
      child.emit('close', 3, null); // ssh2 emits close once stdout has ended, stderr may lag
      child.stderr.end('err 2\n');
      const r = await result;
      assert.deepEqual(r, { stdout: '', stderr: stream ? '' : 'rc\nerr 1\nerr 2\n', code: 3 });
      if (stream) assert.equal(err, 'rc\nerr 1\nerr 2\n');
    }
  });
});

describe('the pid marker filter', () => {
  const nonce = 'c0ffee';
  const line = `\x1etownlock-pid-${nonce}:31337\n`;
  const text = `noise from rc files\n${line}first\nsecond \x1e not a marker\n`;
  const expected = 'noise from rc files\nfirst\nsecond \x1e not a marker\n';

  test('removes the marker line however the chunks split it', () => {
    const bytes = Buffer.from(text, 'latin1');
    for (let a = 0; a <= bytes.length; a++) {
      for (let b = a; b <= bytes.length; b += 3) {
        const f = new PidMarker(nonce).filter();
        const out = [bytes.subarray(0, a), bytes.subarray(a, b), bytes.subarray(b)].map((c) => f.pass(c));
        out.push(f.end());
        assert.equal(Buffer.concat(out).toString('latin1'), expected, `split at ${a}, ${b}`);
      }
    }
  });

  test('holds back only what may be the marker, and passes chunks as they are once it has passed', () => {
    const f = new PidMarker(nonce).filter();
    assert.equal(f.pass(Buffer.from('plain\n')).toString(), 'plain\n');
    assert.equal(f.pass(Buffer.from('x\x1etownlock-p')).toString(), 'x');
    assert.equal(f.pass(Buffer.from(`id-${nonce}:12`)).toString(), '');
    assert.equal(f.pass(Buffer.from('3\nafter')).toString(), 'after');
    const chunk = Buffer.from(line); // a second marker line is the command's own output
    assert.equal(f.pass(chunk), chunk, 'the same Buffer: no copy, no delay');
    assert.equal(f.end().length, 0);
  });

  test('something that starts like the marker but is not its line is passed on, and little is held', () => {
    const f = new PidMarker(nonce).filter();
    const fake = `\x1etownlock-pid-${nonce}:12x\n`;
    assert.equal(f.pass(Buffer.from(fake)).toString(), fake);
    // A marker start followed by an endless run of digits: held back no more than a marker line's length.
    const start = Buffer.from(`\x1etownlock-pid-${nonce}:`);
    let out = f.pass(start).length;
    for (let i = 0; i < 100; i++) out += f.pass(Buffer.from('1234567890')).length;
    const held = start.length + 1000 - out;
    assert.ok(held <= start.length + 20, `held ${held} bytes`);
    assert.equal(out + f.end().length, start.length + 1000);
    // The real marker after all that is still removed.
    assert.equal(f.pass(Buffer.from(`\n${line}z`)).toString(), '\nz');
  });
});

describe('a local command that cannot be started', () => {
  test('is reported as a shell would: 127 or 126, in its words on stderr', async () => {
    const { LocalConnection } = await import('./local.js');
    const local = new LocalConnection();
    const cases: [string, number, string][] = [
      ['no-such-command-xyz', 127, 'no-such-command-xyz: command not found\n'],
      ['/no/such/dir/x', 127, '/no/such/dir/x: no such file or directory\n'],
      ['/tmp', 126, '/tmp: is a directory\n'],
      ['/etc/passwd/x', 126, '/etc/passwd/x: not a directory\n'],
    ];
    for (const [command, code, stderr] of cases) {
      assert.deepEqual(await local.exec(command), { stdout: '', stderr, code }, command);
    }
    const streamed: Buffer[] = [];
    const viaCallback = await local.exec('/etc/passwd/x', [], { onStderr: (b) => void streamed.push(b) });
    assert.deepEqual(viaCallback, { stdout: '', stderr: '', code: 126 });
    assert.equal(Buffer.concat(streamed).toString(), '/etc/passwd/x: not a directory\n');
    await local.close();
  });
});
