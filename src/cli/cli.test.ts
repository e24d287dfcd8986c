/** The CLI in-process, with a fake context: colour rules and output plumbing. */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { scratchDir } from '../../test/scratch-dir.js';
import { FileLock } from '../filelock/index.js';
import { runCli } from './cli.js';
import type { CliContext, Input } from './context.js';
import type { CommandSpec } from './spec.js';

const dir = scratchDir('townlock-cli-unit-');

/** A context whose stdout claims to be a terminal; `stdin`, when given, is its standard input. */
function fakeContext(env: Record<string, string>, stdin?: Input) {
  let out = '';
  let err = '';
  const bytes: Buffer[] = [];
  const ctx: CliContext = {
    env: { TOWNLOCK_REGISTRY: join(dir, 'machines.json'), ...env },
    cwd: dir,
    stdout: {
      write: (s) => {
        out += s;
      },
      writeBytes: (b) => {
        bytes.push(Buffer.from(b));
        return undefined;
      },
      isTTY: true,
    },
    stderr: {
      write: (s) => {
        err += s;
      },
      writeBytes: (b) => {
        err += Buffer.from(b).toString();
        return undefined;
      },
      isTTY: true,
    },
    stdin,
    spawn: () => {
      throw new Error('not used');
    },
    onSignal: () => () => {},
  };
  return { ctx, out: () => out, err: () => err, bytes: () => Buffer.concat(bytes) };
}

test('colour on a terminal, none with NO_COLOR', async () => {
  const tty = fakeContext({});
  assert.equal(await runCli(['machine', 'list'], tty.ctx), 0);
  assert.ok(tty.out().startsWith('\u001b[1mNAME'), JSON.stringify(tty.out()));
  const plain = fakeContext({ NO_COLOR: '1' });
  assert.equal(await runCli(['machine', 'list'], plain.ctx), 0);
  assert.ok(plain.out().startsWith('NAME'));
  assert.ok(!plain.out().includes('\u001b['));
  assert.equal(await runCli(['machine', 'show', 'nope'], plain.ctx), 1);
  assert.equal(plain.err(), 'townlock: Machine not found: "nope" [ERR_MACHINE_NOT_FOUND]\n');
});

test('--json output is one parseable document even on a terminal', async () => {
  const tty = fakeContext({});
  assert.equal(await runCli(['machine', 'list', '--json'], tty.ctx), 0);
  assert.deepEqual(JSON.parse(tty.out()), [{ name: 'local', type: 'local' }]);
});

test('an internal error (a bug) exits 70 with its stack, sanitized', async () => {
  const plain = fakeContext({ NO_COLOR: '1' });
  const broken: CommandSpec = {
    path: ['machine', 'list'],
    summary: 'broken',
    usage: ['townlock machine list'],
    options: [],
    example: 'townlock machine list',
    load: async () => async () => {
      throw new TypeError('cannot read x of undefined\u001b[2J');
    },
  };
  assert.equal(await runCli(['machine', 'list'], plain.ctx, [broken]), 70);
  const [first, ...stack] = plain.err().trimEnd().split('\n');
  assert.equal(
    first,
    'townlock: internal error (a bug in townlock; please report it): cannot read x of undefined\\x1b[2J',
  );
  assert.match(stack[0]!, /^TypeError: cannot read x of undefined\\x1b\[2J$/);
  assert.ok(
    stack.some((l) => /^\s+at /.test(l)),
    'the stack is printed',
  );
});

test('machine exec: stdin reaches the command unless it is a terminal; output is raw bytes', async () => {
  const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
  let opened = 0;
  const piped = fakeContext(
    {},
    {
      isTTY: false,
      stream: () => {
        opened++;
        return Readable.from([all, all]);
      },
    },
  );
  assert.equal(await runCli(['machine', 'exec', 'local', 'cat'], piped.ctx), 0);
  assert.ok(piped.bytes().equals(Buffer.concat([all, all])), 'every byte, through cat and back');
  assert.equal(piped.out(), '', 'nothing goes through the sanitizing text path');
  assert.equal(opened, 1);
  // A terminal: the command reads end-of-file at once (as ssh(1) without -t), and stdin is left alone.
  const tty = fakeContext(
    {},
    { isTTY: true, stream: () => assert.fail('a terminal stdin must not be read') },
  );
  assert.equal(await runCli(['machine', 'exec', 'local', 'cat'], tty.ctx), 0);
  assert.equal(tty.bytes().length, 0);
  // No stdin in the context at all: the same.
  const none = fakeContext({});
  assert.equal(await runCli(['machine', 'exec', 'local', 'sh', '-c', 'cat; echo done >&2'], none.ctx), 0);
  assert.equal(none.err(), 'done\n');
});

test('machine exec: a reader gone away (EPIPE) kills the command and exits 141, like SIGPIPE', async () => {
  const epipe = Object.assign(new Error('write EPIPE'), { code: 'EPIPE' });
  const ctx = fakeContext({});
  let writes = 0;
  ctx.ctx.stdout.writeBytes = () => {
    writes++;
    return Promise.reject(epipe);
  };
  const started = Date.now();
  // `yes` writes forever: only the failed write can end it.
  assert.equal(await runCli(['machine', 'exec', 'local', 'yes'], ctx.ctx), 141);
  assert.ok(Date.now() - started < 10_000);
  assert.ok(writes >= 1);
  assert.equal(ctx.err(), '', "no message: a closed pipe is the reader's choice");
});

test('lock run: signals stay subscribed from the wait for the lock until the command has exited', async () => {
  const { ctx } = fakeContext({});
  let subscribed = 0;
  let childRunning = false;
  const gaps: string[] = [];
  ctx.onSignal = () => {
    subscribed++;
    return () => {
      subscribed--;
      if (subscribed === 0 && childRunning) gaps.push('unsubscribed while the command ran');
    };
  };
  ctx.spawn = () => {
    // Without a subscription at this moment, a signal would take its default action (ending townlock and
    // releasing the lock) while the command just started runs on.
    if (subscribed === 0) gaps.push('no subscription when the command started');
    childRunning = true;
    const child = Object.assign(new EventEmitter(), {
      pid: 424242,
      exitCode: null as number | null,
      signalCode: null,
      kill: () => true,
    });
    setImmediate(() => {
      child.emit('spawn');
      childRunning = false;
      child.exitCode = 0;
      child.emit('exit', 0, null);
    });
    return child as unknown as ChildProcess;
  };
  assert.equal(await runCli(['lock', 'run', join(dir, 'signals.json'), 'true'], ctx), 0);
  assert.deepEqual(gaps, []);
  assert.equal(subscribed, 0, 'unsubscribed once the command ended');
});

test('lock run: a signal after the command ended is answered once the lock is released (128+N)', async () => {
  const { ctx } = fakeContext({});
  const handlers = new Set<(signal: NodeJS.Signals) => void>();
  ctx.onSignal = (handler) => {
    handlers.add(handler);
    return () => handlers.delete(handler);
  };
  ctx.spawn = () => {
    const child = Object.assign(new EventEmitter(), {
      pid: 424243,
      exitCode: null as number | null,
      signalCode: null,
      kill: () => true,
    });
    setImmediate(() => {
      child.emit('spawn');
      child.exitCode = 3;
      child.emit('exit', 3, null);
      // The command has ended; the lock is not released yet: townlock must neither die nor forget it.
      assert.equal(handlers.size, 1, 'still subscribed while the lock is released');
      for (const handler of handlers) handler('SIGTERM');
    });
    return child as unknown as ChildProcess;
  };
  const file = join(dir, 'late-signal.json');
  assert.equal(await runCli(['lock', 'run', file, 'true'], ctx), 143);
  assert.equal(handlers.size, 0);
  // And the lock was released: another holder gets it at once.
  const after = new FileLock(file);
  assert.equal(await after.tryLock(), true);
  await after.unlock();
});
