/**
 * One conformance suite, run against LocalConnection and against SshConnection talking to a real sshd
 * on 127.0.0.1, with the same expectations. SSH-only failure modes follow.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import {
  type Connection,
  ConnectionError,
  LocalConnection,
  SshConnection,
} from '../../src/connection/index.js';
import { MachineRegistry } from '../../src/registry/index.js';
import { DIST, hasTool, reapAll, requireTool, start, tempDir } from '../multiprocess/helpers.js';
import { keygen, SSHD, startSshd, type TestSshd } from './sshd.js';

const tmp = tempDir('townlock-conn-');
let sshd: TestSshd | undefined;
const haveSshd = existsSync(SSHD) && hasTool('ssh-keygen');
const haveTmux = hasTool('tmux');

before(async () => {
  if (haveSshd) sshd = await startSshd(join(tmp.dir, 'sshd'));
});
after(() => {
  sshd?.kill();
  reapAll();
  tmp.remove();
});

const tmuxSocket = join(tmp.dir, 'tmux.sock');
const kinds: { label: string; make: () => Connection; needs?: string }[] = [
  { label: 'LocalConnection', make: () => new LocalConnection({ tmuxSocket }) },
  {
    label: 'SshConnection',
    needs: 'sshd (openssh-server)',
    make: () =>
      new SshConnection({
        name: 'test-ssh',
        host: sshd!.host,
        keyPath: sshd!.clientKey,
        knownHostsPath: sshd!.knownHosts,
        tmuxSocket,
      }),
  },
];

/** Whether process `pid` has ended (gone, or a zombie nobody reaped yet). The test sshd runs on this machine. */
function isGone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z';
  } catch {
    return true;
  }
}

/** Waits until every pid listed in `pidFile` has ended. */
async function allGone(pidFile: string): Promise<void> {
  const pids = readFileSync(pidFile, 'utf8').trim().split(' ').map(Number);
  assert.equal(pids.length, 2);
  await eventually(async () => pids.every(isGone), `processes ${pids.join(' ')} to end`);
}

const BIN = join(DIST, '..', 'bin', 'townlock.js');
/** Runs the built CLI to completion, with `env` added to this process's environment. */
const tl = (args: string[], env: Record<string, string> = {}) =>
  spawnSync(process.execPath, [BIN, ...args], {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, NO_COLOR: '1', ...env },
  });

/** Polls `check` until it returns true or the deadline passes (for effects visible only by looking). */
async function eventually(check: () => Promise<boolean>, what: string, deadlineMs = 10_000): Promise<void> {
  const end = Date.now() + deadlineMs;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`deadline passed waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

for (const kind of kinds) {
  describe(`${kind.label} conformance`, () => {
    let conn: Connection;
    let n = 0;
    const dir = () => join(tmp.dir, `${kind.label}-${++n}`);
    const ready = (t: { skip: (r: string) => void }) => {
      if (kind.needs && !requireTool(t, kind.needs, haveSshd)) return false;
      conn ??= kind.make();
      return true;
    };
    after(() => conn?.close());

    test('writeFile, readFile, stat, exists; writes are atomic and keep the mode', async (t) => {
      if (!ready(t)) return;
      const d = dir();
      await conn.mkdir(d);
      const file = join(d, 'a.txt');
      assert.equal(await conn.exists(file), false);
      await conn.writeFile(file, 'hello\n');
      assert.equal((await conn.readFile(file)).toString(), 'hello\n');
      const s = await conn.stat(file);
      assert.deepEqual([s.name, s.size, s.isDir, s.mode & 0o777], ['a.txt', 6, false, 0o600]);
      assert.ok(Math.abs(s.mtime.getTime() - Date.now()) < 60_000);
      await conn.writeFile(file, Buffer.from([0, 1, 2, 255]), { mode: 0o640 });
      assert.deepEqual([...(await conn.readFile(file))], [0, 1, 2, 255]);
      assert.equal((await conn.stat(file)).mode & 0o777, 0o640);
      await conn.writeFile(file, 'again');
      assert.equal((await conn.stat(file)).mode & 0o777, 0o640, 'an existing file keeps its mode');
      assert.deepEqual(readdirSync(d), ['a.txt'], 'no temp file left');
      assert.equal((await conn.stat(d)).isDir, true);
      assert.equal(await conn.exists(d), true);
    });

    test('mkdir is recursive and idempotent; remove and removeAll', async (t) => {
      if (!ready(t)) return;
      const d = dir();
      await conn.mkdir(join(d, 'x', 'y', 'z'));
      await conn.mkdir(join(d, 'x', 'y', 'z'));
      await conn.writeFile(join(d, 'x', 'y', 'f'), '1');
      await conn.remove(join(d, 'x', 'y', 'f'));
      await conn.remove(join(d, 'x', 'y', 'z'));
      assert.deepEqual(readdirSync(join(d, 'x', 'y')), []);
      await conn.writeFile(join(d, 'x', 'y', 'g'), '1');
      await conn.removeAll(join(d, 'x'));
      assert.equal(await conn.exists(join(d, 'x')), false);
      await conn.removeAll(join(d, 'x'));
    });

    test('missing paths give NotFoundError, refused ones PermissionError', async (t) => {
      if (!ready(t)) return;
      const missing = join(dir(), 'nope');
      for (const op of [() => conn.readFile(missing), () => conn.stat(missing), () => conn.remove(missing)]) {
        const err = await op().then(
          () => assert.fail('should fail'),
          (e: unknown) => e as ConnectionError,
        );
        assert.equal(err.code, 'ERR_NOT_FOUND');
        assert.ok(err instanceof ConnectionError);
        assert.equal(err.path, missing);
        assert.equal(err.machine, conn.name);
      }
      // Refused even to root: procfs entries cannot be unlinked, sysfs takes no new files.
      await assert.rejects(conn.remove('/proc/version'), { code: 'ERR_PERMISSION', name: 'PermissionError' });
      await assert.rejects(conn.writeFile('/sys/kernel/townlock-test', 'x'), { code: 'ERR_PERMISSION' });
    });

    test('glob: *, ?, [...], ** and hidden files', async (t) => {
      if (!ready(t)) return;
      const d = dir();
      for (const f of [
        'a/one.txt',
        'a/two.txt',
        'a/.hidden.txt',
        'a/b/three.txt',
        'a/b/c/four.log',
        'x1',
        'x2',
        'y1',
      ]) {
        await conn.mkdir(join(d, f, '..'));
        await conn.writeFile(join(d, f), f);
      }
      assert.deepEqual(await conn.glob(`${d}/a/*.txt`), [`${d}/a/one.txt`, `${d}/a/two.txt`]);
      assert.deepEqual(await conn.glob(`${d}/a/**/*.txt`), [
        `${d}/a/b/three.txt`,
        `${d}/a/one.txt`,
        `${d}/a/two.txt`,
      ]);
      assert.deepEqual(await conn.glob(`${d}/x?`), [`${d}/x1`, `${d}/x2`]);
      assert.deepEqual(await conn.glob(`${d}/[xy]1`), [`${d}/x1`, `${d}/y1`]);
      assert.deepEqual(await conn.glob(`${d}/[!x]1`), [`${d}/y1`]);
      assert.deepEqual(await conn.glob(`${d}/a/.h*`), [`${d}/a/.hidden.txt`]);
      assert.deepEqual(await conn.glob(`${d}/a/b/c/four.log`), [`${d}/a/b/c/four.log`]);
      assert.deepEqual(await conn.glob(`${d}/nothing/*`), []);
    });

    test('exec passes every argument literally and returns stdout, stderr and code', async (t) => {
      if (!ready(t)) return;
      const nasty = [
        'a b',
        "it's",
        'say "hi"',
        '; rm -rf /tmp/never',
        '$(id)',
        '`id`',
        'line1\nline2',
        '*',
        '',
        '$HOME',
        '\\',
      ];
      const r = await conn.exec('printf', ['[%s]\n', ...nasty]);
      assert.equal(r.code, 0);
      assert.equal(r.stdout, nasty.map((a) => `[${a}]\n`).join(''));
      const fail = await conn.exec('sh', ['-c', 'echo out; echo err >&2; exit 3']);
      assert.deepEqual(fail, { stdout: 'out\n', stderr: 'err\n', code: 3 });
      const missing = await conn.exec('no-such-command-xyz');
      assert.equal(missing.code, 127);
      // In a shell's words on both sides (sh: "...: not found"; locally "...: command not found").
      assert.match(missing.stderr, /no-such-command-xyz: (command )?not found\n$/);
      assert.doesNotMatch(missing.stderr, /spawn|ENOENT/);
    });

    test('a command killed by signal N exits 128+N', async (t) => {
      if (!ready(t)) return;
      for (const [signal, code] of [
        ['TERM', 143],
        ['KILL', 137],
        ['INT', 130],
        ['HUP', 129],
      ] as const) {
        const r = await conn.exec('sh', ['-c', `kill -${signal} $$`]);
        assert.equal(r.code, code, `SIG${signal}`);
      }
    });

    test('exec honours cwd, env and input', async (t) => {
      if (!ready(t)) return;
      const d = dir();
      await conn.mkdir(d);
      assert.equal((await conn.exec('pwd', [], { cwd: d })).stdout, `${d}\n`);
      const env = await conn.exec('sh', ['-c', 'printf %s "$TL_VALUE"'], { env: { TL_VALUE: "x 'y' $z" } });
      assert.equal(env.stdout, "x 'y' $z");
      assert.equal((await conn.exec('cat', [], { input: 'from stdin' })).stdout, 'from stdin');
      await assert.rejects(conn.exec('true', [], { env: { 'BAD NAME': '1' } }), {
        code: 'ERR_INVALID_OPTION',
      });
    });

    test('exec pipes a readable input to stdin, binary-safe, and closes stdin at its end', async (t) => {
      if (!ready(t)) return;
      const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
      const chunks = [all, Buffer.alloc(1024 * 1024, 0xff), all];
      const r = await conn.exec('cat', [], { input: Readable.from(chunks) });
      assert.equal(r.code, 0);
      assert.ok(Buffer.from(r.stdout, 'latin1').length > 0);
      const out: Buffer[] = [];
      const streamed = await conn.exec('cat', [], {
        input: Readable.from(chunks),
        onStdout: (chunk) => {
          out.push(chunk);
        },
      });
      assert.deepEqual(streamed, { stdout: '', stderr: '', code: 0 });
      assert.ok(Buffer.concat(out).equals(Buffer.concat(chunks)), 'every byte, in order');
      const sorted = await conn.exec('sort', ['-r'], { input: Readable.from(['a\n', 'b\n']) });
      assert.equal(sorted.stdout, 'b\na\n');
    });

    test('onStdout and onStderr get output as it is written, before the command ends', async (t) => {
      if (!ready(t)) return;
      const input = new PassThrough();
      let out = '';
      let err = '';
      let seen: () => void;
      const bothSeen = new Promise<void>((resolve) => {
        seen = resolve;
      });
      const check = () => out === 'out1\n' && err === 'err1\n' && seen();
      const running = conn.exec(
        'sh',
        ['-c', 'echo out1; echo err1 >&2; read x; echo "out2 $x"; echo "err2 $x" >&2; exit 3'],
        {
          input,
          onStdout: (chunk) => {
            assert.ok(Buffer.isBuffer(chunk));
            out += chunk;
            check();
          },
          onStderr: (chunk) => {
            assert.ok(Buffer.isBuffer(chunk));
            err += chunk;
            check();
          },
          timeout: 30_000,
        },
      );
      // The command waits for a line on stdin: the first lines must have arrived without it.
      let deadline: NodeJS.Timeout | undefined;
      await Promise.race([
        bothSeen,
        new Promise((_, reject) => {
          deadline = setTimeout(
            () => reject(new Error(`no streamed output: ${JSON.stringify([out, err])}`)),
            10_000,
          );
        }),
      ]).finally(() => {
        clearTimeout(deadline);
        input.end('go\n');
      });
      assert.deepEqual(await running, { stdout: '', stderr: '', code: 3 }, 'nothing is collected');
      assert.equal(out, 'out1\nout2 go\n');
      assert.equal(err, 'err1\nerr2 go\n', 'stderr exactly as written (over SSH: no pid marker)');
    });

    test('streamed output is complete with a slow (async) consumer; 20 MB are not collected', async (t) => {
      if (!ready(t)) return;
      const size = 20 * 1000 * 1000;
      let bytes = 0;
      const r = await conn.exec('head', ['-c', String(size), '/dev/zero'], {
        // A consumer that takes a turn of the event loop per chunk: exec waits for each promise.
        onStdout: (chunk) => {
          bytes += chunk.length;
          return new Promise<void>((resolve) => setImmediate(resolve));
        },
        timeout: 120_000,
      });
      // Lengths, not the strings: a failure must not print 20 MB.
      assert.deepEqual([r.stdout.length, r.stderr.length, r.code], [0, 0, 0], 'nothing is collected');
      assert.equal(bytes, size);
    });

    test('a throwing output callback or a failing input kills the command and rejects with that error', async (t) => {
      if (!ready(t)) return;
      const d = dir();
      await conn.mkdir(d);
      const pids = join(d, 'pids');
      const boom = new Error('consumer broke');
      await assert.rejects(
        conn.exec('sh', ['-c', `sleep 60 & echo "$$ $!" > ${pids}; echo ready; wait`], {
          onStdout: () => {
            throw boom;
          },
        }),
        (err) => err === boom,
      );
      await allGone(pids);
      const inputPids = join(d, 'input-pids');
      const failing = new PassThrough();
      const running = conn.exec('sh', ['-c', `sleep 60 & echo "$$ $!" > ${inputPids}; cat; wait`], {
        input: failing,
      });
      await eventually(
        async () => existsSync(inputPids) && readFileSync(inputPids, 'utf8').includes('\n'),
        'pids',
      );
      const broken = new Error('input broke');
      failing.destroy(broken);
      await assert.rejects(running, (err) => err === broken);
      await allGone(inputPids);
      assert.equal((await conn.exec('echo', ['still usable'])).stdout, 'still usable\n');
    });

    test('exec timeout and abort kill the command and everything it started, and reject promptly', async (t) => {
      if (!ready(t)) return;
      const d = dir();
      await conn.mkdir(d);
      // A shell with a child: killing only the shell (or only closing the channel) leaves `sleep` running.
      const script = (pids: string) => `sleep 60 & echo "$$ $!" > ${pids}; wait`;

      const timedOut = join(d, 'timeout.pids');
      const started = Date.now();
      await assert.rejects(
        conn.exec('sh', ['-c', script(timedOut)], { timeout: 1000 }),
        (err: ConnectionError) => {
          assert.equal(err.code, 'ERR_CONNECTION');
          assert.equal(err.reason, 'timeout');
          assert.equal(err.operation, 'exec');
          return true;
        },
      );
      assert.ok(Date.now() - started < 5000, 'the timeout rejects promptly');
      await allGone(timedOut);

      const aborted = join(d, 'abort.pids');
      const controller = new AbortController();
      const running = conn.exec('sh', ['-c', script(aborted)], { signal: controller.signal });
      await eventually(
        async () => existsSync(aborted) && readFileSync(aborted, 'utf8').includes('\n'),
        'pids',
      );
      const abortedAt = Date.now();
      controller.abort();
      await assert.rejects(running, { code: 'ERR_CONNECTION', reason: 'aborted' });
      assert.ok(Date.now() - abortedAt < 1000, 'the abort rejects promptly');
      await allGone(aborted);

      await assert.rejects(conn.exec('sleep', ['20'], { signal: AbortSignal.abort() }), {
        reason: 'aborted',
      });
      assert.equal((await conn.exec('echo', ['still usable'])).stdout, 'still usable\n');
    });

    test('an exec timeout beyond 2^31 ms does not fire at once', async (t) => {
      if (!ready(t)) return;
      // Node clamps setTimeout delays >= 2^31 ms to 1 ms: such a timeout used to reject immediately.
      const r = await conn.exec('sh', ['-c', 'sleep 0.2; echo done'], { timeout: 2_600_000_000 });
      assert.deepEqual(r, { stdout: 'done\n', stderr: '', code: 0 });
    });

    test('tmux: new, has, list, send-keys, capture, kill', async (t) => {
      if (!ready(t) || !requireTool(t, 'tmux', haveTmux)) return;
      const session = `tl-${kind.label}`;
      await conn.tmuxNewSession(session, { cwd: tmp.dir });
      assert.equal(await conn.tmuxHasSession(session), true);
      assert.ok((await conn.tmuxListSessions()).includes(session));
      await conn.tmuxSendKeys(session, "echo 'hello from' tmux-$((6*7))");
      await eventually(
        async () => (await conn.tmuxCapturePane(session)).includes('hello from tmux-42'),
        'tmux output',
      );
      await conn.tmuxKillSession(session);
      assert.equal(await conn.tmuxHasSession(session), false);
      await assert.rejects(conn.tmuxSendKeys(session, 'x'), { code: 'ERR_CONNECTION' });
    });

    test('close is idempotent and works as asyncDispose', async (t) => {
      if (!ready(t)) return;
      const other = kind.make();
      await other.exec('true');
      await other[Symbol.asyncDispose]();
      await other.close();
      if (!other.isLocal)
        await assert.rejects(other.exec('true'), { code: 'ERR_CONNECTION', reason: 'closed' });
    });
  });
}

describe('SshConnection failure modes', () => {
  const opts = () => ({
    host: sshd!.host,
    keyPath: sshd!.clientKey,
    knownHostsPath: sshd!.knownHosts,
    connectTimeout: 10_000,
  });

  test('one SSH connection serves many operations', async (t) => {
    if (!requireTool(t, 'sshd (openssh-server)', haveSshd)) return;
    const before = sshd!.acceptedCount();
    await using conn = new SshConnection(opts());
    await Promise.all(Array.from({ length: 4 }, (_, i) => conn.exec('echo', [String(i)])));
    await conn.stat('/');
    await conn.exec('true');
    assert.equal(sshd!.acceptedCount() - before, 1);
  });

  test('small requests are not held back by Nagle and delayed ACKs (TCP_NODELAY)', async (t) => {
    if (!requireTool(t, 'sshd (openssh-server)', haveSshd)) return;
    await using conn = new SshConnection(opts());
    await conn.stat('/');
    // Without TCP_NODELAY each SFTP round trip on loopback waits ~40 ms for a delayed ACK: 20 take ~800 ms.
    const started = performance.now();
    for (let i = 0; i < 20; i++) await conn.stat('/');
    const ms = performance.now() - started;
    assert.ok(ms < 400, `20 SFTP stats took ${ms.toFixed(0)} ms`);
  });

  test('close() right after a timeout still kills the remote command (as the CLI does)', async (t) => {
    if (!requireTool(t, 'sshd (openssh-server)', haveSshd)) return;
    const conn = new SshConnection(opts());
    const pids = join(tmp.dir, 'close-after-timeout.pids');
    await assert.rejects(
      conn.exec('sh', ['-c', `sleep 60 & echo "$$ $!" > ${pids}; wait`], { timeout: 1000 }),
      {
        reason: 'timeout',
      },
    );
    await conn.close();
    await allGone(pids);
  });

  test('a wrong key is an auth error', async (t) => {
    if (!requireTool(t, 'sshd (openssh-server)', haveSshd)) return;
    await using conn = new SshConnection({ ...opts(), keyPath: sshd!.wrongKey });
    await assert.rejects(conn.exec('true'), (err: ConnectionError) => {
      assert.equal(err.code, 'ERR_CONNECTION');
      assert.equal(err.reason, 'auth');
      assert.equal(err.operation, 'connect');
      assert.match(err.message, /authentication/);
      return true;
    });
    await assert.rejects(
      new SshConnection({ ...opts(), keyPath: join(tmp.dir, 'missing-key') }).exec('true'),
      {
        reason: 'auth',
        message: /cannot read key/,
      },
    );
  });

  test('a passphrase-protected key works with the passphrase (option or env) and fails clearly without', async (t) => {
    if (!requireTool(t, 'sshd (openssh-server)', haveSshd)) return;
    const { execFileSync } = await import('node:child_process');
    const { appendFileSync } = await import('node:fs');
    const key = join(tmp.dir, 'sshd', 'protected_key');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', 'open sesame', '-f', key]);
    appendFileSync(join(tmp.dir, 'sshd', 'authorized_keys'), readFileSync(`${key}.pub`));
    await using withOption = new SshConnection({ ...opts(), keyPath: key, passphrase: 'open sesame' });
    assert.equal((await withOption.exec('echo', ['unlocked'])).stdout, 'unlocked\n');
    process.env.TOWNLOCK_SSH_PASSPHRASE = 'open sesame';
    try {
      await using fromEnv = new SshConnection({ ...opts(), keyPath: key });
      assert.equal((await fromEnv.exec('true')).code, 0);
    } finally {
      delete process.env.TOWNLOCK_SSH_PASSPHRASE;
    }
    for (const passphrase of [undefined, 'wrong']) {
      await assert.rejects(
        new SshConnection({ ...opts(), keyPath: key, passphrase }).exec('true'),
        (err: ConnectionError) => {
          assert.equal(err.code, 'ERR_CONNECTION');
          assert.equal(err.reason, 'auth');
          assert.ok(err.message.includes(`cannot use the key ${key}`), err.message);
          // The CLI user and the library user each learn where the passphrase goes.
          assert.match(err.message, /\$TOWNLOCK_SSH_PASSPHRASE/);
          assert.match(err.message, /passphrase option/);
          return true;
        },
      );
    }
  });

  test('an unknown host key is refused; accept-new records it; a changed key is always refused', async (t) => {
    if (!requireTool(t, 'sshd (openssh-server)', haveSshd)) return;
    const empty = join(tmp.dir, 'known_hosts_empty');
    await assert.rejects(
      new SshConnection({ ...opts(), knownHostsPath: empty }).exec('true'),
      (err: ConnectionError) => {
        assert.equal(err.reason, 'host-key');
        assert.match(err.message, /not in .*known_hosts_empty/);
        // What to do, for the CLI user and for the library user.
        assert.match(err.message, /run with --accept-new-host-key/);
        assert.match(err.message, /hostKeyPolicy: 'accept-new' in the library/);
        return true;
      },
    );
    await using tofu = new SshConnection({ ...opts(), knownHostsPath: empty, hostKeyPolicy: 'accept-new' });
    assert.equal((await tofu.exec('echo', ['ok'])).stdout, 'ok\n');
    assert.match(
      readFileSync(empty, 'utf8'),
      new RegExp(`^\\[127\\.0\\.0\\.1\\]:${sshd!.port} ssh-ed25519 `),
    );
    await using again = new SshConnection({ ...opts(), knownHostsPath: empty });
    assert.equal((await again.exec('echo', ['ok'])).code, 0, 'the recorded key is now trusted');

    const changed = join(tmp.dir, 'known_hosts_changed');
    const otherKey = readFileSync(`${sshd!.wrongKey}.pub`, 'utf8').split(' ').slice(0, 2).join(' ');
    writeFileSync(changed, `[127.0.0.1]:${sshd!.port} ${otherKey}\n`);
    await assert.rejects(
      new SshConnection({ ...opts(), knownHostsPath: changed, hostKeyPolicy: 'accept-new' }).exec('true'),
      { reason: 'host-key', message: /does not match/ },
    );
  });

  test('a server with several host keys shows the type known_hosts lists (ssh2 is told to prefer it)', async (t) => {
    if (!requireTool(t, 'sshd (openssh-server)', haveSshd)) return;
    // ssh2 on its own asks for ed25519 first; known_hosts knows only the server's ecdsa key.
    const onlyEcdsa = join(tmp.dir, 'known_hosts_ecdsa');
    writeFileSync(onlyEcdsa, `[127.0.0.1]:${sshd!.port} ${sshd!.ecdsaHostKeyLine}\n`);
    await using conn = new SshConnection({ ...opts(), knownHostsPath: onlyEcdsa });
    assert.equal((await conn.exec('echo', ['ok'])).stdout, 'ok\n');
  });

  test('accept-new refuses, and records nothing for, a new key of a host known by another key', async (t) => {
    if (!requireTool(t, 'sshd (openssh-server)', haveSshd)) return;
    // Known by a nistp384 key the server does not have: it then shows its ed25519 key, new to us.
    const other = keygen(join(tmp.dir, 'other_p384'), ['-t', 'ecdsa', '-b', '384']);
    const known = join(tmp.dir, 'known_hosts_other');
    const content = `[127.0.0.1]:${sshd!.port} ${readFileSync(`${other}.pub`, 'utf8').split(' ').slice(0, 2).join(' ')}\n`;
    writeFileSync(known, content);
    await assert.rejects(
      new SshConnection({ ...opts(), knownHostsPath: known, hostKeyPolicy: 'accept-new' }).exec('true'),
      (err: ConnectionError) => {
        assert.equal(err.reason, 'host-key');
        assert.match(err.message, /knows this host by other keys \(ecdsa-sha2-nistp384\)/);
        return true;
      },
    );
    assert.equal(readFileSync(known, 'utf8'), content, 'known_hosts is unchanged');
  });

  test('a Host alias of the ssh config file gives HostName, Port, User and IdentityFile (library and CLI)', async (t) => {
    if (!requireTool(t, 'sshd (openssh-server)', haveSshd)) return;
    const cfg = join(tmp.dir, 'ssh_config');
    writeFileSync(
      cfg,
      [
        'Host tl-alias other-alias',
        '  HostName 127.0.0.1',
        `  Port ${sshd!.port}`,
        `  User ${userInfo().username}`,
        `  IdentityFile ${sshd!.clientKey}`,
        'Host *',
        '  Port 1',
        '  User nobody',
        '',
      ].join('\n'),
    );
    // known_hosts lists [127.0.0.1]:port only: it is checked for the real name and port, not the alias.
    await using conn = new SshConnection({
      host: 'tl-alias',
      sshConfigPath: cfg,
      knownHostsPath: sshd!.knownHosts,
    });
    assert.equal((await conn.exec('echo', ['via alias'])).stdout, 'via alias\n');
    assert.equal(conn.name, 'tl-alias');

    const registry = join(tmp.dir, 'alias-reg', 'machines.json');
    const g = ['--registry', registry];
    assert.equal(tl([...g, 'machine', 'add', 'aliased', '--host', 'tl-alias']).status, 0);
    const r = tl([...g, 'machine', 'exec', '--known-hosts', sshd!.knownHosts, 'aliased', 'echo', 'cli'], {
      TOWNLOCK_SSH_CONFIG: cfg,
    });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, 'cli\n');
  });

  test('sshd killed mid-operation rejects the operation; nothing hangs', async (t) => {
    if (!requireTool(t, 'sshd (openssh-server)', haveSshd)) return;
    // A private server, so killing it does not disturb the other tests.
    const own = await startSshd(join(tmp.dir, 'sshd-kill'));
    const conn = new SshConnection({
      host: own.host,
      keyPath: own.clientKey,
      knownHostsPath: own.knownHosts,
      keepaliveInterval: 1000,
    });
    const d = join(tmp.dir, 'kill-marker');
    const running = conn.exec('sh', ['-c', `echo $$ > ${d}; exec sleep 30`]);
    await eventually(
      async () => existsSync(d) && readFileSync(d, 'utf8').trim() !== '',
      'remote command start',
    );
    own.kill();
    await assert.rejects(running, (err: ConnectionError) => {
      assert.equal(err.code, 'ERR_CONNECTION');
      assert.equal(err.reason, 'closed');
      return true;
    });
    await assert.rejects(conn.exec('true'), { code: 'ERR_CONNECTION' });
    await conn.close();
  });
});

describe('registry connections and the CLI over SSH', () => {
  test('registry.connection() gives a working connection for local and ssh machines', async (t) => {
    if (!requireTool(t, 'sshd (openssh-server)', haveSshd)) return;
    const path = join(tmp.dir, 'reg', 'machines.json');
    const reg = await MachineRegistry.open(path);
    await reg.add({ name: 'remote', type: 'ssh', host: sshd!.host, keyPath: sshd!.clientKey });
    await using remote = reg.connection('remote', { knownHostsPath: sshd!.knownHosts });
    assert.equal(remote.isLocal, false);
    assert.equal(remote.name, 'remote');
    assert.equal((await remote.exec('echo', ['over ssh'])).stdout, 'over ssh\n');
    await using local = reg.connection('local');
    assert.equal(local.isLocal, true);
    assert.equal(reg.localConnection().isLocal, true);
    assert.throws(() => reg.connection('nope'), { code: 'ERR_MACHINE_NOT_FOUND' });
  });

  test('townlock machine exec passes arguments literally and the exit code through; machine test reports', async (t) => {
    if (!requireTool(t, 'sshd (openssh-server)', haveSshd)) return;
    const registry = join(tmp.dir, 'cli-reg', 'machines.json');
    const g = ['--registry', registry];
    assert.equal(
      tl([...g, 'machine', 'add', 'box', '--host', sshd!.host, '--key', sshd!.clientKey]).status,
      0,
    );
    const k = ['--known-hosts', sshd!.knownHosts];
    // Options go before NAME: everything after it is the command (-- is optional).
    const r = tl([...g, 'machine', 'exec', ...k, 'box', 'printf', '%s|', 'a b', '$(id)', "it's"]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, "a b|$(id)|it's|");
    assert.equal(tl([...g, 'machine', 'exec', ...k, 'box', '--', 'sh', '-c', 'exit 5']).status, 5);
    const test = tl([...g, 'machine', 'test', 'box', ...k, '--json']);
    assert.equal(test.status, 0, test.stderr);
    const report = JSON.parse(test.stdout);
    assert.equal(report.ok, true);
    assert.match(report.uname, /Linux/);
    assert.ok(report.rttMs > 0);
    const human = tl([...g, 'machine', 'test', 'box', ...k]);
    assert.match(human.stdout, /^ok box: connected in [\d.]+ ms, round trip [\d.]+ ms\nLinux /);
    const unknownHost = tl([...g, 'machine', 'test', 'box', '--known-hosts', join(tmp.dir, 'none')]);
    assert.equal(unknownHost.status, 1);
    assert.match(unknownHost.stderr, /^townlock: .*not in .*none.*\[ERR_CONNECTION\]\n$/);
  });

  test('Ctrl-C on townlock machine exec kills the command and what it started, locally and over SSH', async (t) => {
    if (!requireTool(t, 'sshd (openssh-server)', haveSshd)) return;
    const registry = join(tmp.dir, 'cli-sigint', 'machines.json');
    const g = ['--registry', registry];
    assert.equal(
      tl([...g, 'machine', 'add', 'box', '--host', sshd!.host, '--key', sshd!.clientKey]).status,
      0,
    );
    for (const machine of ['local', 'box']) {
      const pids = join(tmp.dir, 'cli-sigint', `${machine}.pids`);
      const cli = start(process.execPath, [
        BIN,
        ...g,
        'machine',
        'exec',
        '--known-hosts',
        sshd!.knownHosts,
        machine,
        '--',
        'sh',
        '-c',
        `sleep 60 & echo "$$ $!" > ${pids}; wait`,
      ]);
      await eventually(async () => existsSync(pids) && readFileSync(pids, 'utf8').includes('\n'), 'pids');
      cli.proc.kill('SIGINT');
      assert.equal(await cli.exited(15_000), 130, `${machine}: ${cli.stderr()}`);
      await allGone(pids);
    }
  });
});
