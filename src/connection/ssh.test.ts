import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { EventEmitter, once } from 'node:events';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { scratchDir } from '../../test/scratch-dir.js';
import { remoteCommandLine, shellQuote } from './_exec.js';
import { checkHostKey, knownKeyTypes, preferredHostKeyAlgorithms, rememberHostKey } from './_known-hosts.js';
import { killGroupLine, killRemote, PID_WAIT_MS, PidMarker, reportingPid } from './_remote-kill.js';
import { parseSshHost } from './ssh.js';

const dir = scratchDir('townlock-ssh-unit-');

/** A fake public key blob of the given type (type name, then payload), as SSH encodes it. */
function blob(type: string, payload: string): Buffer {
  const name = Buffer.from(type);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(name.length);
  return Buffer.concat([len, name, Buffer.from(payload)]);
}
const ed = blob('ssh-ed25519', 'key-one');
const edOther = blob('ssh-ed25519', 'key-two');
const rsa = blob('ssh-rsa', 'rsa-key');

describe('parseSshHost', () => {
  test('user, host and port', () => {
    assert.deepEqual(parseSshHost('deploy@build-01:2222'), { user: 'deploy', host: 'build-01', port: 2222 });
    assert.deepEqual(parseSshHost('build-01'), { user: undefined, host: 'build-01', port: 22 });
    assert.deepEqual(parseSshHost('me@[::1]:2200'), { user: 'me', host: '::1', port: 2200 });
  });
  test('refuses option-like and malformed hosts', () => {
    for (const bad of ['-oProxyCommand=x', 'a b', 'h:0', 'h:70000', '', 'a@b@c', 'a\0b', 5, null]) {
      assert.throws(() => parseSshHost(bad as string), { code: 'ERR_INVALID_OPTION' }, String(bad));
    }
  });
});

describe('shell quoting', () => {
  test('quotes only what needs it, and single quotes survive', () => {
    assert.equal(shellQuote('plain-word_1.txt'), 'plain-word_1.txt');
    assert.equal(shellQuote("it's"), `'it'\\''s'`);
    assert.equal(shellQuote(''), "''");
    assert.equal(shellQuote('$(id)'), "'$(id)'");
  });
  test('cwd and env become a quoted prefix', () => {
    assert.equal(remoteCommandLine('ls', ['a b'], { cwd: '/my dir' }), "cd -- '/my dir' && exec ls 'a b'");
    assert.equal(remoteCommandLine('env', [], { env: { A: "x'y" } }), "env A='x'\\''y' env");
  });

  // The remote side runs the line with the user's login shell (`$SHELL -c LINE`), so run it with real ones.
  for (const shell of ['sh', 'bash']) {
    test(`${shell}: a relative cwd named like an option, '-', or found in CDPATH is that directory`, () => {
      const base = join(dir, `cwd-${shell}`);
      for (const d of ['-P', '-', '-L', 'sub', 'cdpath/sub']) mkdirSync(join(base, d), { recursive: true });
      for (const cwd of ['-P', '-', '-L', 'sub']) {
        const r = spawnSync(shell, ['-c', remoteCommandLine('pwd', [], { cwd })], {
          cwd: base,
          encoding: 'utf8',
          env: { ...process.env, OLDPWD: '/', CDPATH: join(base, 'cdpath') },
        });
        assert.equal(r.stdout, `${join(base, cwd)}\n`, `${shell} with cwd ${cwd}: ${r.stderr}`);
        assert.equal(r.status, 0);
      }
    });
  }
});

describe('known_hosts', () => {
  const file = (name: string, content: string) => {
    const path = join(dir, name);
    writeFileSync(path, content);
    return path;
  };

  test('plain, bracketed-port, wildcard and hashed entries match', () => {
    const b64 = ed.toString('base64');
    assert.equal(
      checkHostKey(
        file('plain', `other ssh-ed25519 xxx\nbuild,build.lan ssh-ed25519 ${b64}\n`),
        'build',
        22,
        ed,
      ),
      'match',
    );
    assert.equal(
      checkHostKey(file('port', `[10.0.0.5]:2222 ssh-ed25519 ${b64}\n`), '10.0.0.5', 2222, ed),
      'match',
    );
    assert.equal(
      checkHostKey(file('port22', `[10.0.0.5]:2222 ssh-ed25519 ${b64}\n`), '10.0.0.5', 22, ed),
      'unknown',
    );
    assert.equal(
      checkHostKey(file('wild', `*.lan,!bad.lan ssh-ed25519 ${b64}\n`), 'box.lan', 22, ed),
      'match',
    );
    assert.equal(
      checkHostKey(file('wild2', `*.lan,!bad.lan ssh-ed25519 ${b64}\n`), 'bad.lan', 22, ed),
      'unknown',
    );
    const salt = Buffer.from('0123456789abcdef0123');
    const hash = createHmac('sha1', salt).update('[h]:2200').digest('base64');
    assert.equal(
      checkHostKey(
        file('hashed', `|1|${salt.toString('base64')}|${hash} ssh-ed25519 ${b64}\n`),
        'h',
        2200,
        ed,
      ),
      'match',
    );
  });

  test('a different key of the same type is a mismatch; another type alone is other-type; revoked wins', () => {
    const path = file(
      'mismatch',
      `box ssh-ed25519 ${edOther.toString('base64')}\nbox ssh-rsa ${rsa.toString('base64')}\n`,
    );
    assert.equal(checkHostKey(path, 'box', 22, ed), 'mismatch');
    assert.equal(
      checkHostKey(file('othertype', `box ssh-rsa ${rsa.toString('base64')}\n`), 'box', 22, ed),
      'other-type',
    );
    const revoked = file(
      'revoked',
      `@revoked * ssh-ed25519 ${ed.toString('base64')}\nbox ssh-ed25519 ${ed.toString('base64')}\n`,
    );
    assert.equal(checkHostKey(revoked, 'box', 22, ed), 'revoked');
    assert.equal(checkHostKey(join(dir, 'missing'), 'box', 22, ed), 'unknown');
  });

  test('rememberHostKey appends an entry (host name lowercased, as OpenSSH writes it) that then matches', () => {
    const path = join(dir, 'sub', 'known_hosts');
    rememberHostKey(path, 'Box', 2200, ed);
    assert.equal(readFileSync(path, 'utf8'), `[box]:2200 ssh-ed25519 ${ed.toString('base64')}\n`);
    assert.equal(checkHostKey(path, 'box', 2200, ed), 'match');
    assert.equal(checkHostKey(path, 'BOX', 2200, ed), 'match');
  });

  test('a host listed with two keys of one type accepts either (OpenSSH: any matching line wins)', () => {
    const third = blob('ssh-ed25519', 'key-three');
    for (const order of [
      [ed, edOther],
      [edOther, ed],
    ]) {
      const path = file('two-keys', order.map((k) => `box ssh-ed25519 ${k.toString('base64')}\n`).join(''));
      assert.equal(checkHostKey(path, 'box', 22, ed), 'match');
      assert.equal(checkHostKey(path, 'box', 22, edOther), 'match');
      assert.equal(checkHostKey(path, 'box', 22, third), 'mismatch');
    }
  });

  test('hashed entries match whatever the case of the host name (OpenSSH hashes it lowercased)', () => {
    const b64 = ed.toString('base64');
    const salt = Buffer.from('fedcba9876543210fedc');
    const hashed = (name: string) =>
      `|1|${salt.toString('base64')}|${createHmac('sha1', salt).update(name).digest('base64')}`;
    const path = file(
      'hashed-case',
      `${hashed('build.lan')} ssh-ed25519 ${b64}\n${hashed('[h.lan]:2200')} ssh-ed25519 ${b64}\n`,
    );
    assert.equal(checkHostKey(path, 'Build.LAN', 22, ed), 'match');
    assert.equal(checkHostKey(path, 'H.Lan', 2200, ed), 'match');
    assert.equal(
      checkHostKey(file('plain-case', `Build.Lan ssh-ed25519 ${b64}\n`), 'build.lan', 22, ed),
      'match',
    );
  });

  test('knownKeyTypes lists the types recorded for a host; ssh2 is told to prefer their algorithms', () => {
    const path = file(
      'types',
      [
        `other ecdsa-sha2-nistp256 ${ed.toString('base64')}`,
        `@revoked box ecdsa-sha2-nistp384 ${ed.toString('base64')}`,
        `box ssh-rsa ${rsa.toString('base64')}`,
        `box,box.lan ssh-ed25519 ${ed.toString('base64')}`,
        `box ssh-ed25519 ${edOther.toString('base64')}`,
        `box sk-ssh-ed25519@openssh.com ${ed.toString('base64')}`,
      ].join('\n'),
    );
    const types = knownKeyTypes(path, 'BOX', 22);
    assert.deepEqual(types, ['ssh-rsa', 'ssh-ed25519', 'sk-ssh-ed25519@openssh.com']);
    const algorithms = ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa', 'ssh-ed25519'];
    // ssh2's `remove` then `prepend` moves them to the front of its default list (an unknown type is skipped).
    assert.deepEqual(preferredHostKeyAlgorithms(types), {
      remove: algorithms,
      prepend: algorithms,
      append: [],
    });
    assert.equal(preferredHostKeyAlgorithms([]), undefined);
    assert.equal(preferredHostKeyAlgorithms(['sk-ssh-ed25519@openssh.com']), undefined);
    assert.deepEqual(knownKeyTypes(join(dir, 'missing'), 'box', 22), []);
  });
});

/** Whether process `pid` ends within 5 s (SIGKILL is delivered at once, the exit follows; a zombie has ended). */
async function ends(pid: number): Promise<boolean> {
  const ended = () => {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      return stat[stat.lastIndexOf(')') + 2] === 'Z';
    } catch {
      return true;
    }
  };
  for (const deadline = Date.now() + 5000; Date.now() < deadline; await delay(10)) if (ended()) return true;
  return ended();
}

describe('the remote pid marker', () => {
  test('a real shell reports its pid, which the exec keeps; the marker is found across any chunk split', async () => {
    // The login shell (bash here) execs sh, which reports its pid and execs the command: one pid throughout.
    const line = reportingPid(remoteCommandLine('sh', ['-c', 'echo $$'], {}), 'abc123');
    const r = spawnSync('bash', ['-c', `echo $$ >&2; ${line}`], { encoding: 'latin1' });
    const pid = r.stdout.trim();
    const reported = `\x1etownlock-pid-abc123:${pid}\n`;
    assert.equal(r.stderr, `${pid}\n${reported}`, 'login shell, marker and command share one pid');
    const stderr = Buffer.from(`rc noise\n${reported}err 1\n`, 'latin1');
    for (let cut = 0; cut <= stderr.length; cut++) {
      const marker = new PidMarker('abc123');
      marker.feed(stderr.subarray(0, cut));
      marker.feed(stderr.subarray(cut));
      assert.equal(await marker.pid, Number(pid), `split at ${cut}`);
    }
    assert.equal(new PidMarker('abc123').strip(stderr).toString(), 'rc noise\nerr 1\n');
  });

  test('only the marker with this nonce is stripped, and only once', () => {
    const text = '\x1etownlock-pid-ffff:12\nx\x1etownlock-pid-abc:34\n\x1etownlock-pid-abc:56\n';
    assert.equal(
      new PidMarker('abc').strip(Buffer.from(text)).toString(),
      '\x1etownlock-pid-ffff:12\nx\x1etownlock-pid-abc:56\n',
    );
  });

  test('the kill line targets the process group, then the process', () => {
    assert.equal(killGroupLine(4242), 'kill -s KILL -- -4242 2>/dev/null || kill -s KILL 4242');
    assert.throws(() => killGroupLine(1));
    assert.throws(() => reportingPid('true', "x'; rm -rf /"));
  });

  for (const shell of ['sh', 'bash']) {
    test(`${shell} runs the kill line: the leader and its child die`, async () => {
      const leader = spawn('sh', ['-c', 'sleep 60 & echo $!; wait'], { detached: true, stdio: 'pipe' });
      const [child] = (await once(leader.stdout!, 'data')) as [Buffer];
      const exited = once(leader, 'exit');
      const r = spawnSync(shell, ['-c', killGroupLine(leader.pid!)]);
      assert.equal(r.status, 0, r.stderr.toString());
      assert.deepEqual(await exited, [null, 'SIGKILL']);
      assert.ok(await ends(Number(child.toString())), 'the child is gone too');
    });
  }
});

describe('killRemote', () => {
  /** A channel and a client as killRemote uses them, recording what it does. */
  function fakes() {
    const log: string[] = [];
    const channel = Object.assign(new EventEmitter(), { close: () => log.push('close channel') });
    const client = {
      exec: (line: string, cb: (err: Error | undefined, ch: EventEmitter) => void) => {
        log.push(`exec ${line}`);
        const ch = Object.assign(new EventEmitter(), {
          resume() {},
          stderr: { resume() {} },
          end: () => setImmediate(() => ch.emit('close')),
        });
        cb(undefined, ch);
      },
    };
    // biome-ignore lint/suspicious/noExplicitAny: minimal stand-ins for ssh2's Client and ClientChannel
    return { log, channel: channel as any, client: client as any };
  }

  test('a kill requested before the pid arrived waits for it, kills the group, then closes', async () => {
    const { log, channel, client } = fakes();
    const marker = new PidMarker('ab');
    const done = killRemote(client, channel, marker, performance.now());
    await delay(20);
    assert.deepEqual(log, [], 'nothing to kill yet');
    marker.feed(Buffer.from('\x1etownlock-pid-ab:4242\n'));
    await done;
    assert.deepEqual(log, [`exec ${killGroupLine(4242)}`, 'close channel']);
  });

  test('a command that ends first is not killed; without a pid after the wait, the channel is just closed', async () => {
    const first = fakes();
    const done = killRemote(first.client, first.channel, new PidMarker('ab'), performance.now());
    first.channel.emit('close');
    await done;
    assert.deepEqual(first.log, ['close channel']);

    const late = fakes();
    await killRemote(late.client, late.channel, new PidMarker('ab'), performance.now() - PID_WAIT_MS);
    assert.deepEqual(late.log, ['close channel']);
  });
});
