import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { scratchDir } from '../../test/scratch-dir.js';
import { expandIdentityFile, readSshConfig } from './_ssh-config.js';
import { sshTarget } from './_ssh-target.js';

const dir = scratchDir('townlock-ssh-config-');
let n = 0;
/** Writes a config file and returns its path. */
const config = (text: string) => {
  const path = join(dir, `config-${++n}`);
  writeFileSync(path, text);
  return path;
};

describe('readSshConfig', () => {
  const path = config(`
# global settings come first and apply to every host
IdentityFile ~/.ssh/global_key

Host build build-*  !build-old
    HostName %h.example.com
    User deploy
    Port 2222
    IdentityFile ~/.ssh/build_%h_%r

Host build-old
  HostName legacy.example.com

Host web?
  hostname=10.0.0.7
  USER = "web admin"
  Port 22

Match host build
  User matched

Host *
  User fallback
  Port 2200
  ForwardAgent yes
  IdentityFile "~/.ssh/with space"
`);

  test('Host patterns with *, ? and !negation; first value wins; IdentityFile accumulates', () => {
    assert.deepEqual(readSshConfig(path, 'build'), {
      hostName: 'build.example.com',
      user: 'deploy',
      port: 2222,
      identityFiles: ['~/.ssh/global_key', '~/.ssh/build_%h_%r', '~/.ssh/with space'],
    });
    assert.deepEqual(readSshConfig(path, 'build-7').hostName, 'build-7.example.com');
    assert.deepEqual(readSshConfig(path, 'build-old'), {
      hostName: 'legacy.example.com',
      user: 'fallback',
      port: 2200,
      identityFiles: ['~/.ssh/global_key', '~/.ssh/with space'],
    });
    assert.deepEqual(readSshConfig(path, 'web1'), {
      hostName: '10.0.0.7',
      user: 'web admin',
      port: 22,
      identityFiles: ['~/.ssh/global_key', '~/.ssh/with space'],
    });
    assert.deepEqual(readSshConfig(path, 'web10').hostName, undefined, '? is exactly one character');
    assert.equal(
      readSshConfig(path, 'BUILD').user,
      'fallback',
      'Host patterns are case-sensitive, as in ssh',
    );
  });

  test('Match blocks are skipped; a missing file is empty; bad lines name the file and line', () => {
    assert.notEqual(readSshConfig(path, 'build').user, 'matched');
    assert.deepEqual(readSshConfig(join(dir, 'missing'), 'x'), { identityFiles: [] });
    assert.throws(
      () => readSshConfig(config('Host x\n  Port 99999\n'), 'x'),
      /config-\d+ line 2: bad Port "99999"/,
    );
    assert.throws(() => readSshConfig(config('Host x\n  User "open\n'), 'x'), /line 2: invalid quotes/);
    assert.throws(() => readSshConfig(config('Port\n'), 'x'), /line 1: no argument/);
  });

  test('Include: relative to the including file, wildcards, and Host state restored afterwards', () => {
    mkdirSync(join(dir, 'conf.d'), { recursive: true });
    writeFileSync(join(dir, 'conf.d', 'a.conf'), 'Host inc\n  HostName from-a\n');
    writeFileSync(join(dir, 'conf.d', 'b.conf'), 'Host other\n  User from-b\n');
    writeFileSync(join(dir, 'conf.d', 'skip.txt'), 'Host inc\n  User never\n');
    const main = config('Host inc\n  Include conf.d/*.conf\n  User after-include\n');
    assert.deepEqual(readSshConfig(main, 'inc'), {
      hostName: 'from-a',
      user: 'after-include',
      identityFiles: [],
    });
    const loop = join(dir, 'loop');
    writeFileSync(loop, `Include ${loop}\n`);
    assert.throws(() => readSshConfig(loop, 'x'), /nested too deeply/);
  });

  test('IdentityFile: ~ and %d %h %p %r %u %% expand', () => {
    const values = { home: '/home/me', host: 'h.lan', port: 2222, remoteUser: 'deploy', localUser: 'me' };
    assert.equal(
      expandIdentityFile('~/.ssh/id_%h_%p_%r_%u', values),
      '/home/me/.ssh/id_h.lan_2222_deploy_me',
    );
    assert.equal(expandIdentityFile('%d/k%%1', values), '/home/me/k%1');
    assert.equal(expandIdentityFile('/abs/%x', values), '/abs/%x', 'unknown tokens stay');
  });
});

describe('sshTarget: the host spec wins over the config, which wins over the defaults', () => {
  const path = config(
    'Host box\n  HostName 10.1.2.3\n  User cfg-user\n  Port 2200\n  IdentityFile ~/.ssh/box_%r\n',
  );

  test('an alias takes HostName, User, Port and IdentityFile from the config', () => {
    assert.deepEqual(sshTarget({ host: 'box', sshConfigPath: path }), {
      host: '10.1.2.3',
      port: 2200,
      user: 'cfg-user',
      keyPath: undefined,
      identityFiles: [join(homedir(), '.ssh', 'box_cfg-user')],
    });
  });

  test("explicit user@, :port and the machine's keyPath win", () => {
    const t = sshTarget({ host: 'me@box:2022', sshConfigPath: path, keyPath: '~/k' });
    assert.deepEqual([t.host, t.port, t.user, t.keyPath], ['10.1.2.3', 2022, 'me', '~/k']);
    assert.deepEqual(t.identityFiles, [join(homedir(), '.ssh', 'box_me')]);
  });

  test("false or '' disables the config; $TOWNLOCK_SSH_CONFIG picks another file", () => {
    for (const sshConfigPath of [false, ''] as const) {
      const t = sshTarget({ host: 'box', sshConfigPath });
      assert.deepEqual([t.host, t.port], ['box', 22]);
    }
    process.env.TOWNLOCK_SSH_CONFIG = path;
    try {
      assert.equal(sshTarget({ host: 'box' }).host, '10.1.2.3');
    } finally {
      delete process.env.TOWNLOCK_SSH_CONFIG;
    }
  });
});
