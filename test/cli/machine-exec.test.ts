/**
 * `townlock machine exec` as a user runs it, on the local machine and over SSH (a throwaway sshd on
 * 127.0.0.1): the CLI's stdin reaches the command byte for byte, output reaches townlock's stdout and
 * stderr while the command still runs, large output passes through, and the SSH pid marker never shows.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { SSHD, startSshd, type TestSshd } from '../connection/sshd.js';
import { DIST, hasTool, reapAll, requireTool, start, tempDir } from '../multiprocess/helpers.js';

const BIN = resolve(DIST, '..', 'bin', 'townlock.js');
const tmp = tempDir('townlock-mexec-');
const registry = join(tmp.dir, 'reg', 'machines.json');
const haveSshd = existsSync(SSHD) && hasTool('ssh-keygen');
let sshd: TestSshd | undefined;

before(async () => {
  if (!haveSshd) return;
  sshd = await startSshd(join(tmp.dir, 'sshd'));
  const add = tl([
    '--registry',
    registry,
    'machine',
    'add',
    'box',
    '--host',
    sshd.host,
    '--key',
    sshd.clientKey,
  ]);
  assert.equal(add.status, 0, add.stderr.toString());
});
after(() => {
  sshd?.kill();
  reapAll();
  tmp.remove();
});

/** The arguments of `townlock machine exec MACHINE -- COMMAND...`. */
function execArgs(machine: string, command: string[]): string[] {
  const known = sshd ? ['--known-hosts', sshd.knownHosts] : [];
  return ['--registry', registry, 'machine', 'exec', ...known, machine, '--', ...command];
}

/** Runs townlock to completion with `input` on its stdin (a pipe), output as bytes. */
function tl(args: string[], input: string | Buffer = '') {
  return spawnSync(process.execPath, [BIN, ...args], {
    input,
    timeout: 60_000,
    maxBuffer: 64 * 1024 * 1024,
    env: { ...process.env, NO_COLOR: '1' },
  });
}

/** A FIFO the command blocks on until the test writes to it: the test's "go" signal. */
function fifo(name: string): string {
  const path = join(tmp.dir, name);
  assert.equal(spawnSync('mkfifo', [path]).status, 0);
  return path;
}

for (const machine of ['local', 'box']) {
  describe(`machine exec ${machine}`, () => {
    const ready = (t: { skip: (r: string) => void }) =>
      machine === 'local' || requireTool(t, 'sshd (openssh-server)', haveSshd);

    test('the CLI stdin reaches the command: printf | machine exec sort -r', (t) => {
      if (!ready(t)) return;
      const r = tl(execArgs(machine, ['sort', '-r']), 'a\nb\n');
      assert.equal(r.stderr.toString(), '');
      assert.equal(r.stdout.toString(), 'b\na\n');
      assert.equal(r.status, 0);
    });

    test('stdin and stdout are binary-safe: every byte value, and a few MB, through cat', (t) => {
      if (!ready(t)) return;
      const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
      const input = Buffer.concat([all, randomBytes(3 * 1024 * 1024), all]);
      const r = tl(execArgs(machine, ['cat']), input);
      assert.equal(r.status, 0, r.stderr.toString());
      assert.equal(r.stdout.length, input.length);
      assert.ok(r.stdout.equals(input), 'cat returns exactly the bytes it was given');
      const count = tl(execArgs(machine, ['wc', '-c']), input);
      assert.equal(count.stdout.toString().trim(), String(input.length));
    });

    test('stdout and stderr arrive while the command runs, unchanged (no pid marker)', async (t) => {
      if (!ready(t)) return;
      const go = fifo(`go-${machine}`);
      const script = 'echo out1; echo err1 >&2; read x < "$0"; echo "out2 $x"; echo "err2 $x" >&2';
      const cli = start(process.execPath, [BIN, ...execArgs(machine, ['sh', '-c', script, go])]);
      try {
        // The command is blocked on the FIFO: these lines can only be seen if townlock passes them on now.
        await cli.waitFor('out1', 10_000);
        await cli.waitForErr('err1', 10_000);
      } finally {
        await writeFile(go, 'go\n'); // releases the command (also when the assertions above failed)
      }
      assert.equal(await cli.exited(), 0, cli.stderr());
      assert.deepEqual(cli.lines, ['out1', 'out2 go']);
      assert.equal(cli.stderr(), 'err1\nerr2 go\n');
    });

    test('50 MB of output pass through, every byte counted', async (t) => {
      if (!ready(t)) return;
      const size = 50 * 1000 * 1000;
      const child = spawn(process.execPath, [
        BIN,
        ...execArgs(machine, ['head', '-c', String(size), '/dev/zero']),
      ]);
      let bytes = 0;
      let nonZero = 0;
      child.stdout.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
        if (chunk.some((b) => b !== 0)) nonZero++;
      });
      let err = '';
      child.stderr.on('data', (d) => {
        err += d;
      });
      const code = await new Promise((done) => child.on('close', done));
      assert.equal(code, 0, err);
      assert.equal(bytes, size);
      assert.equal(nonZero, 0);
      assert.equal(err, '');
    });

    test('townlock ends with the command, though its stdin stays open', async (t) => {
      if (!ready(t)) return;
      for (const command of [['head', '-n', '1'], ['true']]) {
        const cli = start(process.execPath, [BIN, ...execArgs(machine, command)]);
        cli.send('only this line');
        // stdin is never closed: townlock must end with the command, not wait for the end of its input.
        assert.equal(await cli.exited(15_000), 0, `${command}: ${cli.stderr()}`);
        assert.deepEqual(cli.lines, command[0] === 'head' ? ['only this line'] : []);
      }
    });
  });
}
