/** The CLI in-process, with a fake context: colour rules and output plumbing. */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { scratchDir } from '../../test/scratch-dir.js';
import { runCli } from './cli.js';
import type { CliContext } from './context.js';
import type { CommandSpec } from './spec.js';

const dir = scratchDir('townlock-cli-unit-');

/** A context whose stdout claims to be a terminal. */
function fakeContext(env: Record<string, string>) {
  let out = '';
  let err = '';
  const ctx: CliContext = {
    env: { TOWNLOCK_REGISTRY: join(dir, 'machines.json'), ...env },
    cwd: dir,
    stdout: {
      write: (s) => {
        out += s;
      },
      isTTY: true,
    },
    stderr: {
      write: (s) => {
        err += s;
      },
      isTTY: true,
    },
    spawn: () => {
      throw new Error('not used');
    },
    onSignal: () => () => {},
  };
  return { ctx, out: () => out, err: () => err };
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
