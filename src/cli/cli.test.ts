/** The CLI in-process, with a fake context: colour rules and output plumbing. */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { scratchDir } from '../../test/scratch-dir.js';
import { runCli } from './cli.js';
import type { CliContext } from './context.js';

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
