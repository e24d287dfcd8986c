/** The built CLI run as a subprocess, as a user runs it: every command, flag, exit code and message. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { join, resolve } from 'node:path';
import { after, afterEach, describe, test } from 'node:test';
import { FileLock } from '../../src/filelock/index.js';
import { DIST, fixture, reapAll, requireRoot, requireTool, start, tempDir } from '../multiprocess/helpers.js';

const BIN = resolve(DIST, '..', 'bin', 'townlock.js');
const tmp = tempDir('townlock-cli-');
after(tmp.remove);
afterEach(reapAll);
let seq = 0;
const freshRegistry = () => join(tmp.dir, `r${++seq}`, 'machines.json');
/** uid and gid of the user nobody (Debian). */
const NOBODY = 65534;

/** Runs townlock synchronously with a clean environment (no TTY, so no colour). */
function tl(args: string[], env: NodeJS.ProcessEnv = {}, cwd = tmp.dir) {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    cwd,
    env: { PATH: process.env.PATH, HOME: tmp.dir, ...env },
    encoding: 'utf8',
    timeout: 30_000,
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('help and usage', () => {
  test('--help lists every command; no arguments is a usage error', () => {
    const help = tl(['--help']);
    assert.equal(help.code, 0);
    for (const c of [
      'machine list',
      'machine show',
      'machine add',
      'machine remove',
      'lock run',
      'lock status',
      'lock clean',
      'json get',
      'json set',
      'log append',
      'log tail',
    ]) {
      assert.ok(help.out.includes(c), c);
    }
    assert.equal(tl([]).code, 64);
    assert.match(tl(['--version']).out, /^townlock \d+\.\d+\.\d+\n$/);
  });

  test('every command has --help with an example', () => {
    for (const c of [
      ['machine', 'list'],
      ['machine', 'show'],
      ['machine', 'add'],
      ['machine', 'remove'],
      ['lock', 'run'],
      ['lock', 'status'],
      ['lock', 'clean'],
      ['json', 'get'],
      ['json', 'set'],
      ['log', 'append'],
      ['log', 'tail'],
    ]) {
      const r = tl([...c, '--help']);
      assert.equal(r.code, 0, c.join(' '));
      assert.match(r.out, /Usage: townlock/);
      assert.match(r.out, /Example:\n {2}townlock /);
    }
    const group = tl(['machine', '--help']);
    assert.equal(group.code, 0);
    assert.match(group.out, /machine exec .*--accept-new-host-key/);
    assert.match(group.out, /machine test .*--timeout SECONDS/);
    assert.equal(tl(['lock', 'run', '--help']).code, 0);
    assert.equal(tl(['machine', 'rm', '-h']).code, 0);
  });

  test('an unknown command suggests the nearest one, exit 64', () => {
    const r = tl(['machin', 'list']);
    assert.equal(r.code, 64);
    assert.equal(r.err, "townlock: unknown command 'machin'; did you mean 'machine'? [ERR_USAGE]\n");
    const r2 = tl(['lock', 'stauts']);
    assert.equal(r2.code, 64);
    assert.equal(
      r2.err,
      "townlock: unknown command 'lock stauts'; did you mean 'lock status'? [ERR_USAGE]\n",
    );
  });

  test('unknown options and missing arguments are usage errors (exit 64): one line naming the problem', () => {
    const r = tl(['machine', 'list', '--jsn']);
    assert.equal(r.code, 64);
    assert.match(r.err, /--jsn/);
    assert.equal(
      tl(['machine', 'show']).err,
      'townlock: missing NAME; usage: townlock machine show [--registry PATH] [--json] NAME [ERR_USAGE]\n',
    );
    for (const args of [
      ['lock', 'run', '-w', 'soon', 'f', '--', 'true'],
      ['lock', 'run', '-E', '300', 'f', '--', 'true'],
      ['lock', 'run', '-s', '-x', 'f', '--', 'true'],
      ['--registry'],
    ]) {
      const u = tl(args);
      assert.equal(u.code, 64, args.join(' '));
      assert.match(u.err, /^townlock: [^\n]+; [^\n]+ \[ERR_USAGE\]\n$/, args.join(' '));
    }
  });
});

describe('arguments', () => {
  test('--help before the command words shows that command\u2019s (or group\u2019s) help', () => {
    const run = tl(['--help', 'lock', 'run']);
    assert.equal(run.code, 0);
    assert.match(run.out, /^Usage: townlock lock run /m);
    assert.equal(tl(['-h', 'machine', 'ls']).out, tl(['machine', 'list', '--help']).out);
    assert.match(tl(['-h', 'machine']).out, /^Usage: townlock machine <command>/);
    // Unknown words are the same usage errors as without --help in front.
    assert.equal(tl(['--help', 'nope']).code, 64);
    assert.equal(tl(['--help', 'lock', 'nosuch']).code, 64);
  });

  test('machine add names its flags in errors: a missing --host is 64, a refused value 65', () => {
    const registry = ['--registry', freshRegistry()];
    const noHost = tl([...registry, 'machine', 'add', 'noh', '--type', 'ssh']);
    assert.equal(noHost.code, 64);
    assert.match(noHost.err, /^townlock: missing --host for ssh machines; usage: /);
    const key = tl([...registry, 'machine', 'add', 'kk', '-H', 'h', '-k', 'k\tey']);
    assert.equal(key.code, 65);
    assert.equal(
      key.err,
      'townlock: Invalid machine --key: must not contain control characters [ERR_INVALID_MACHINE]\n',
    );
    const emptyKey = tl([...registry, 'machine', 'add', 'ek', '-H', 'h', '--key', '']);
    assert.equal(emptyKey.code, 64);
    assert.match(emptyKey.err, /^townlock: --key needs a key file, got ''; /);
    const port = tl([...registry, 'machine', 'add', 'p', '-H', 'u@h:99999']);
    assert.equal(port.code, 65);
    assert.match(port.err, /--host: "u@h:99999": port 99999 is not 1-65535 \[ERR_INVALID_MACHINE\]/);
  });

  test('a deleted working directory: --version and absolute paths work, a relative path is one line and 66', () => {
    const d = join(tmp.dir, 'gone');
    const inGone = (args: string) =>
      spawnSync(
        'sh',
        ['-c', `mkdir -p "${d}" && cd "${d}" && rmdir "${d}" && exec "${process.execPath}" "${BIN}" ${args}`],
        {
          env: { PATH: process.env.PATH, HOME: tmp.dir },
          encoding: 'utf8',
        },
      );
    const version = inGone('--version');
    assert.equal(version.status, 0, version.stderr);
    const absolute = inGone(`lock run -n "${join(tmp.dir, 'abs-from-gone.json')}" -- echo ran`);
    assert.equal(absolute.status, 0, absolute.stderr);
    assert.equal(absolute.stdout, 'ran\n', 'absolute paths need no working directory');
    const run = inGone('lock run -n relative.json -- true');
    assert.equal(run.status, 66);
    assert.equal(
      run.stderr,
      'townlock: cannot open the current directory: no such file or directory [ENOENT]\n',
    );
  });

  test("lock run stops option parsing at FILE: the command's own flags reach it", () => {
    writeFileSync(join(tmp.dir, 'nums'), '10\n9\n');
    const f1 = join(tmp.dir, 'f1');
    const sorted = tl(['lock', 'run', f1, 'sort', '-n', 'nums']);
    assert.equal(sorted.code, 0, sorted.err);
    assert.equal(sorted.out, '9\n10\n', "-n is sort's, not townlock's --nonblock");
    const ls = tl(['lock', 'run', f1, 'ls', '-h', 'nums']);
    assert.equal(ls.code, 0, ls.err);
    assert.equal(ls.out, 'nums\n', "-h is ls's, not townlock's --help");
    assert.equal(tl(['lock', 'run', f1, 'sh', '-c', 'echo x']).out, 'x\n');
    assert.equal(tl(['lock', 'run', '-n', '--', f1, 'echo', '-n', 'a']).out, 'a');
    assert.equal(tl(['lock', 'run', '-n', f1, '--', 'echo', 'b']).out, 'b\n');
    assert.equal(tl(['lock', 'run', f1, '-c', 'echo "c $0"']).out, 'c /bin/sh\n', "flock(1)'s FILE -c CMD");
    assert.equal(tl(['lock', 'run', '-c', 'echo d', f1]).out, 'd\n');
    assert.equal(tl(['lock', 'run', '-w5', '-E', '7', f1, 'true']).code, 0, 'clusters and -w5');
  });

  test('machine exec stops option parsing at NAME', () => {
    const registry = ['--registry', freshRegistry()];
    const r = tl([...registry, 'machine', 'exec', 'local', 'echo', '-n', 'hi']);
    assert.equal(r.code, 0, r.err);
    assert.equal(r.out, 'hi');
    assert.equal(tl(['machine', 'exec', ...registry, 'local', '--', 'echo', '--timeout']).out, '--timeout\n');
  });

  test('an option value starting with - reaches validation, which refuses it by name', () => {
    const registry = ['--registry', freshRegistry()];
    const host = tl([...registry, 'machine', 'add', 'evil', '--host', '-oProxyCommand=x']);
    assert.equal(host.code, 65);
    assert.match(
      host.err,
      /^townlock: Invalid machine --host: "-oProxyCommand=x" .* \[ERR_INVALID_MACHINE\]\n$/,
    );
    const wait = tl(['lock', 'run', '-w', '-1', 'f', 'true']);
    assert.equal(wait.code, 64);
    assert.match(wait.err, /^townlock: -w needs a number of seconds \(0 or more\), got '-1'; /);
  });

  test('usage errors: exit 64, one stderr line saying what to type instead', () => {
    const cases: [string[], RegExp][] = [
      [['--frob'], /^unknown option '--frob'; see 'townlock --help'$/],
      [['--regsitry', 'x', 'machine', 'list'], /^unknown option '--regsitry'; did you mean '--registry'\?$/],
      [[], /^missing command; /],
      [['machine'], /^missing machine command; give one of: list, show, add, remove, exec, test/],
      [['machine', 'rmv', 'x'], /^unknown command 'machine rmv'; did you mean 'machine rm'\?$/],
      [['machine', 'list', '--jsn'], /^unknown option '--jsn'; did you mean '--json'\?$/],
      [['machine', 'list', '--json=yes'], /^option '--json' takes no value; /],
      [
        ['machine', 'add', 'x', '--host'],
        /^option '--host' needs a value; write '--host \[USER@\]HOST\[:PORT\]'$/,
      ],
      [['machine', 'show'], /^missing NAME; usage: townlock machine show /],
      [['lock', 'run', '-o', 'f', 'true'], /^unknown option '-o'; see 'townlock lock run --help'$/],
      [['lock', 'run', 'f'], /^missing COMMAND; usage: townlock lock run /],
      [['lock', 'run', 'f', '-c'], /^-c after FILE takes exactly one argument; /],
      [['lock', 'run', '-c', 'x', 'f', 'y'], /^give either -c COMMAND or a COMMAND after FILE, not both; /],
      [['--registry=', 'machine', 'list'], /^--registry needs a PATH, got ''; write '--registry PATH'$/],
      [['--registry', '', 'machine', 'list'], /^--registry needs a PATH, got ''; /],
      [['machine', 'list', '--registry='], /^--registry needs a PATH, got ''; /],
    ];
    for (const [args, message] of cases) {
      const r = tl(args);
      assert.equal(r.code, 64, `${args.join(' ')}: ${r.err}`);
      assert.equal(r.out, '', args.join(' '));
      const m = /^townlock: (.*) \[ERR_USAGE\]\n$/.exec(r.err);
      assert.ok(m, `${args.join(' ')}: one line with the code, got ${JSON.stringify(r.err)}`);
      assert.match(m[1]!, message, args.join(' '));
    }
  });

  test('machine ls and machine rm are aliases; an empty $TOWNLOCK_REGISTRY counts as unset', () => {
    const home = join(tmp.dir, `home${++seq}`);
    mkdirSync(home);
    const env = { HOME: home, TOWNLOCK_REGISTRY: '' };
    assert.equal(tl(['machine', 'add', 'a', '--host', 'a'], env).code, 0);
    assert.ok(existsSync(join(home, '.config', 'townlock', 'machines.json')));
    assert.match(tl(['machine', 'ls'], env).out, /^a\s+ssh\s+a\s/m);
    assert.equal(tl(['machine', 'rm', 'a'], env).out, 'removed a\n');
    assert.doesNotMatch(tl(['machine', 'ls'], env).out, /^a\s/m);
  });

  test("--registry is accepted before the command words and among a machine command's options", () => {
    const before = freshRegistry();
    const among = freshRegistry();
    assert.equal(tl(['--registry', before, 'machine', 'add', 'b', '--host', 'b']).code, 0);
    assert.equal(tl(['machine', 'add', 'c', '--registry', among, '--host', 'c']).code, 0);
    assert.ok(readFileSync(before, 'utf8').includes('"b"'));
    assert.ok(readFileSync(among, 'utf8').includes('"c"'));
  });
});

describe('machine commands', () => {
  test('add, list, show, remove with human and JSON output', () => {
    const registry = freshRegistry();
    const g = ['--registry', registry];
    const key = join(tmp.dir, 'id_test');
    writeFileSync(key, 'not really a key', { mode: 0o600 });
    assert.deepEqual(JSON.parse(tl([...g, 'machine', 'list', '--json']).out), [
      { name: 'local', type: 'local' },
    ]);
    const add = tl([
      ...g,
      'machine',
      'add',
      'build-01',
      '--type',
      'ssh',
      '--host',
      'deploy@build-01:2222',
      '--key',
      key,
      '--town',
      '/srv/town',
    ]);
    assert.equal(add.code, 0, add.err);
    assert.equal(add.out, 'added build-01\n');
    const list = tl([...g, 'machine', 'list']);
    assert.equal(list.code, 0);
    const lines = list.out.trimEnd().split('\n');
    assert.match(lines[0]!, /^NAME\s+TYPE\s+HOST\s+KEY\s+TOWN$/);
    assert.equal(lines[1]!.indexOf('ssh'), lines[0]!.indexOf('TYPE'), 'columns are aligned');
    assert.ok(!list.out.includes('\u001b['), 'no colour when not a TTY');
    assert.deepEqual(JSON.parse(tl([...g, 'machine', 'show', 'build-01', '--json']).out), {
      name: 'build-01',
      type: 'ssh',
      host: 'deploy@build-01:2222',
      keyPath: key,
      townPath: '/srv/town',
    });
    assert.match(tl([...g, 'machine', 'show', 'build-01']).out, /host:\s+deploy@build-01:2222/);
    assert.equal(tl([...g, 'machine', 'remove', 'build-01']).out, 'removed build-01\n');
    assert.equal(JSON.parse(tl([...g, 'machine', 'list', '--json']).out).length, 1);
  });

  test('errors: one stderr line with the code, exit 1 (failed request) or 65 (bad data), file untouched', () => {
    const registry = freshRegistry();
    const g = ['--registry', registry];
    tl([...g, 'machine', 'add', 'keep', '--host', 'keep']);
    const before = readFileSync(registry, 'utf8');
    for (const [args, code, exit] of [
      [['machine', 'add', 'evil', '--host=-oProxyCommand=touch /tmp/x'], 'ERR_INVALID_MACHINE', 65],
      [['machine', 'add', 'bad name', '--type', 'local'], 'ERR_INVALID_MACHINE', 65],
      [['machine', 'show', 'nope'], 'ERR_MACHINE_NOT_FOUND', 1],
      [['machine', 'remove', 'nope'], 'ERR_MACHINE_NOT_FOUND', 1],
      [['machine', 'remove', 'local'], 'ERR_LOCAL_MACHINE', 1],
    ] as const) {
      const r = tl([...g, ...args]);
      assert.equal(r.code, exit, args.join(' '));
      assert.equal(r.err.trim().split('\n').length, 1, r.err);
      assert.match(r.err, new RegExp(`^townlock: .*\\[${code}\\]\\n$`));
    }
    assert.equal(readFileSync(registry, 'utf8'), before);
    writeFileSync(registry, '{"version": 1, "machines": {');
    const corrupt = tl([...g, 'machine', 'add', 'x', '--host', 'x']);
    assert.equal(corrupt.code, 65);
    assert.match(corrupt.err, /ERR_REGISTRY_CORRUPT/);
    assert.equal(readFileSync(registry, 'utf8'), '{"version": 1, "machines": {');
    const unreadable = tl(['--registry', tmp.dir, 'machine', 'list']);
    assert.equal(unreadable.code, 66, 'a registry that cannot be read is an input that cannot be opened');
    assert.match(unreadable.err, /\[ERR_REGISTRY_IO\]\n$/);
  });

  test('machine add: a --key that does not exist is 66, --type local with --host or --key is 64', () => {
    const registry = freshRegistry();
    const g = ['--registry', registry];
    const home = join(tmp.dir, `keyhome${++seq}`);
    mkdirSync(join(home, '.ssh'), { recursive: true });
    const missing = tl([...g, 'machine', 'add', 'a', '--host', 'a', '--key', '~/.ssh/nope'], { HOME: home });
    assert.equal(missing.code, 66);
    assert.equal(
      missing.err,
      `townlock: cannot open key file ${join(home, '.ssh', 'nope')}: no such file or directory [ENOENT]\n`,
    );
    for (const extra of [
      ['--host', 'h'],
      ['--key', '~/.ssh/id'],
    ]) {
      const local = tl([...g, 'machine', 'add', 'l', '--type', 'local', ...extra]);
      assert.equal(local.code, 64, extra.join(' '));
      assert.match(local.err, new RegExp(`^townlock: --type local takes no ${extra[0]} .*; .*'--type ssh'`));
    }
    assert.ok(!existsSync(registry), 'nothing was written');
    writeFileSync(join(home, '.ssh', 'id'), 'key');
    writeFileSync(join(home, 'rel-key'), 'key');
    assert.equal(
      tl([...g, 'machine', 'add', 'a', '--host', 'a', '--key', '~/.ssh/id'], { HOME: home }).code,
      0,
    );
    assert.equal(tl([...g, 'machine', 'add', 'b', '--host', 'b', '--key', 'rel-key'], {}, home).code, 0);
    const stored = JSON.parse(tl([...g, 'machine', 'list', '--json']).out);
    assert.deepEqual(
      stored.map((m: { keyPath?: string }) => m.keyPath),
      ['~/.ssh/id', join(home, 'rel-key'), undefined],
      '~ is kept for each user to expand; a relative path is made absolute',
    );
  });

  test('registry location: --registry, then TOWNLOCK_REGISTRY, then XDG_CONFIG_HOME or ~/.config', () => {
    const fromEnv = freshRegistry();
    tl(['machine', 'add', 'a', '--host', 'a'], { TOWNLOCK_REGISTRY: fromEnv });
    assert.ok(existsSync(fromEnv));
    const flag = freshRegistry();
    tl(['machine', 'add', 'b', '--host', 'b', '--registry', flag], { TOWNLOCK_REGISTRY: fromEnv });
    assert.ok(existsSync(flag));
    assert.ok(!readFileSync(fromEnv, 'utf8').includes('"b"'));
    const home = join(tmp.dir, `home${++seq}`);
    mkdirSync(home);
    tl(['machine', 'add', 'c', '--host', 'c'], { HOME: home });
    assert.ok(existsSync(join(home, '.config', 'townlock', 'machines.json')));
    const xdg = join(tmp.dir, `xdg${++seq}`);
    tl(['machine', 'add', 'd', '--host', 'd'], { XDG_CONFIG_HOME: xdg });
    assert.ok(existsSync(join(xdg, 'townlock', 'machines.json')));
  });

  test('8 parallel `townlock machine add` processes all land', async () => {
    const registry = freshRegistry();
    const kids = Array.from({ length: 8 }, (_, i) =>
      start(process.execPath, [BIN, '--registry', registry, 'machine', 'add', `m${i}`, '--host', `h${i}`]),
    );
    for (const k of kids) assert.equal(await k.exited(), 0, k.stderr());
    const names = JSON.parse(tl(['--registry', registry, 'machine', 'list', '--json']).out).map(
      (m: { name: string }) => m.name,
    );
    assert.deepEqual(names, ['local', 'm0', 'm1', 'm2', 'm3', 'm4', 'm5', 'm6', 'm7']);
  });
});

describe('lock run', () => {
  test("passes the command's exit code through; -c runs a shell command; 69 when it cannot be run", () => {
    const file = join(tmp.dir, 'data.json');
    assert.equal(tl(['lock', 'run', file, '--', 'sh', '-c', 'exit 3']).code, 3);
    const r = tl(['lock', 'run', file, '-c', 'echo "$((20+22))"']);
    assert.equal(r.code, 0);
    assert.equal(r.out, '42\n');
    assert.equal(tl(['lock', 'run', file, 'sh', '-c', 'kill -KILL $$']).code, 128 + 9, 'died of signal 9');
    const missing = tl(['lock', 'run', file, '--', 'no-such-command-xyz']);
    assert.equal(missing.code, 69);
    assert.equal(missing.err, 'townlock: cannot run no-such-command-xyz: command not found [ENOENT]\n');
    const notExecutable = join(tmp.dir, 'not-executable.sh');
    writeFileSync(notExecutable, 'echo hi\n', { mode: 0o644 });
    const denied = tl(['lock', 'run', file, '--', notExecutable]);
    assert.equal(denied.code, 69);
    assert.equal(denied.err, `townlock: cannot run ${notExecutable}: permission denied [EACCES]\n`);
  });

  test('as nobody, a lock file that cannot be created exits 66 with the reason; a real conflict exits 1', async (t) => {
    if (!requireRoot(t, 'run commands as nobody')) return;
    if (!requireTool(t, 'runuser')) return;
    const top = tempDir('townlock-cli-nobody-');
    try {
      chmodSync(top.dir, 0o755);
      mkdirSync(join(top.dir, 'perm')); // root's, 0755: nobody may not create .gastown in it
      mkdirSync(join(top.dir, 'mine'));
      chownSync(join(top.dir, 'mine'), NOBODY, NOBODY);
      const asNobody = (args: string[]) =>
        spawnSync('runuser', ['-u', 'nobody', '--', process.execPath, BIN, ...args], {
          cwd: top.dir,
          encoding: 'utf8',
          timeout: 30_000,
        });
      const denied = asNobody(['lock', 'run', '-n', 'perm/state', '--', 'true']);
      assert.equal(denied.status, 66, denied.stderr);
      assert.equal(
        denied.stderr,
        `townlock: cannot open lock file ${join(top.dir, 'perm', '.gastown', 'locks', 'state.lock')}: permission denied [EACCES]\n`,
      );
      const holder = start('runuser', [
        '-u',
        'nobody',
        '--',
        process.execPath,
        BIN,
        'lock',
        'run',
        join(top.dir, 'mine', 'state'),
        '--',
        'sh',
        '-c',
        'echo held; read line',
      ]);
      await holder.waitFor('held');
      const busy = asNobody(['lock', 'run', '-n', 'mine/state', '--', 'true']);
      assert.equal(busy.status, 1, busy.stderr);
      assert.match(busy.stderr, /is busy \(held by pid \d+\) \[ERR_LOCK_TIMEOUT\]\n$/);
      holder.send('go');
      assert.equal(await holder.exited(), 0);
      // A directory nobody cannot search: 66 with the real reason, for every command that reads inputs.
      mkdirSync(join(top.dir, 'private'), { mode: 0o700 });
      writeFileSync(join(top.dir, 'private', 's.json'), '{"a": 1}');
      for (const args of [
        ['lock', 'run', '-n', 'private/s.json', 'true'],
        ['lock', 'status', 'private/s.json'],
        ['json', 'get', 'private/s.json'],
        ['log', 'tail', 'private/s.json'],
        ['machine', 'import', 'private/s.json'],
      ]) {
        const r = asNobody(args);
        assert.equal(r.status, 66, `${args.join(' ')}: ${r.stderr}`);
        assert.match(r.stderr, /permission denied \[EACCES\]\n$/, args.join(' '));
      }
    } finally {
      top.remove();
    }
  });

  test('a FILE whose directory does not exist is 66 and creates nothing; an empty FILE is a usage error', () => {
    const missing = join(tmp.dir, `no-such-dir-${process.pid}`);
    const r = tl(['lock', 'run', '-n', join(missing, 'x'), 'true']);
    assert.equal(r.code, 66);
    assert.equal(r.err, `townlock: cannot open directory ${missing}: no such file or directory [ENOENT]\n`);
    assert.equal(existsSync(missing), false, 'flock(1) would not create it either');
    for (const args of [
      ['lock', 'run', '-n', '', 'true'],
      ['lock', 'status', ''],
      ['lock', 'clean', ''],
    ]) {
      const e = tl(args);
      assert.equal(e.code, 64, args.join(' '));
      assert.match(e.err, /is empty \(''\)/);
    }
  });

  test('-n and -w against a flock(1) holder exit 1 (or -E), and wait when allowed', async (t) => {
    if (!requireTool(t, 'flock')) return;
    const file = join(tmp.dir, 'flocked.json');
    const lockPath = new FileLock(file).lockPath;
    mkdirSync(join(tmp.dir, '.gastown', 'locks'), { recursive: true });
    const holder = start('flock', ['-x', lockPath, '-c', 'echo held; read line']);
    await holder.waitFor('held');
    const busy = tl(['lock', 'run', '-n', file, '--', 'echo', 'ran']);
    assert.equal(busy.code, 1);
    assert.equal(busy.out, '');
    assert.match(busy.err, /busy \(held by pid \d+\) \[ERR_LOCK_TIMEOUT\]/);
    assert.equal(tl(['lock', 'run', '-n', '-E', '75', file, '--', 'true']).code, 75);
    const timed = tl(['lock', 'run', '-w', '0.2', file, '--', 'true']);
    assert.equal(timed.code, 1);
    assert.match(timed.err, /Timed out after \d+ ms/);
    const waiter = start(process.execPath, [BIN, 'lock', 'run', '-w', '20', file, '--', 'echo', 'got it']);
    holder.send('go');
    assert.equal(await waiter.exited(), 0);
    assert.deepEqual(waiter.lines, ['got it']);
  });

  test('-n against a library holder, and -s beside a library reader', async () => {
    const file = join(tmp.dir, 'lib.json');
    const holder = fixture('hold.mjs', [file, 'exclusive']);
    await holder.waitFor('held');
    assert.equal(tl(['lock', 'run', '-n', file, '--', 'true']).code, 1);
    holder.send('release');
    await holder.exited();
    const reader = fixture('hold.mjs', [file, 'shared']);
    await reader.waitFor('held');
    assert.equal(tl(['lock', 'run', '-n', '-s', file, '--', 'true']).code, 0);
    assert.equal(tl(['lock', 'run', '-n', '-x', file, '--', 'true']).code, 1);
    reader.send('release');
    await reader.exited();
  });

  test('holds the lock until the command exits, and forwards signals to it', async (t) => {
    if (!requireTool(t, 'flock')) return;
    const file = join(tmp.dir, 'signal.json');
    const lockPath = new FileLock(file).lockPath;
    const script = 'trap "echo got-term; exit 7" TERM; echo ready; while :; do sleep 0.05; done';
    const run = start(process.execPath, [BIN, 'lock', 'run', file, '--', 'sh', '-c', script]);
    await run.waitFor('ready');
    assert.equal(spawnSync('flock', ['-n', lockPath, 'true']).status, 1, 'held while the command runs');
    run.proc.kill('SIGTERM');
    assert.equal(await run.exited(), 7);
    assert.ok(run.lines.includes('got-term'));
    assert.equal(spawnSync('flock', ['-n', lockPath, 'true']).status, 0, 'released after it exits');
  });

  test('a signal whose default would end townlock (ALRM, XCPU...) is forwarded; the lock stays held', async (t) => {
    if (!requireTool(t, 'flock')) return;
    const file = join(tmp.dir, 'alarm.json');
    const lockPath = new FileLock(file).lockPath;
    const script =
      'trap "echo got-alrm" ALRM; trap "echo got-xcpu" XCPU; trap "exit 9" TERM; echo ready; while :; do sleep 0.05; done';
    const run = start(process.execPath, [BIN, 'lock', 'run', file, 'sh', '-c', script]);
    await run.waitFor('ready');
    run.proc.kill('SIGALRM');
    await run.waitFor('got-alrm');
    run.proc.kill('SIGXCPU');
    await run.waitFor('got-xcpu');
    assert.equal(spawnSync('flock', ['-n', lockPath, 'true']).status, 1, 'townlock still holds the lock');
    run.proc.kill('SIGTERM');
    assert.equal(await run.exited(), 9);
  });
});

describe('hostile data never reaches the terminal raw', () => {
  // C0 (ESC, BEL), C1 (CSI), DEL and a bidi override: none may appear raw in anything townlock prints.
  // biome-ignore lint/suspicious/noControlCharactersInRegex: looking for control characters
  const RAW = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;

  test('machine list skips invalid entries with one sanitized warning each; show and errors are escaped', () => {
    const registry = freshRegistry();
    mkdirSync(join(registry, '..'), { recursive: true });
    const evil = 'evil\u001b[2J';
    writeFileSync(
      registry,
      JSON.stringify({
        version: 1,
        machines: {
          [evil]: { name: evil, type: 'ssh', host: 'h' },
          spoof: { name: 'spoof', type: 'ssh', host: 'x\u001b]0;pwned\u0007' },
          ok: { name: 'ok', type: 'local', town_path: '/srv/\u009b2J\u202etown' },
        },
      }),
    );
    const g = ['--registry', registry];
    const list = tl([...g, 'machine', 'list']);
    assert.equal(list.code, 0, list.err);
    assert.doesNotMatch(list.out + list.err, RAW);
    assert.deepEqual(
      list.out
        .trimEnd()
        .split('\n')
        .map((l) => l.split(/\s+/)[0]),
      ['NAME', 'local', 'ok'],
    );
    assert.match(list.out, /\/srv\/\\x9b2J\\u202etown/);
    const warnings = list.err.trimEnd().split('\n');
    assert.equal(warnings.length, 2, list.err);
    assert.match(warnings[0]!, /^townlock: warning: skipping invalid machine "evil\\x1b\[2J": name /);
    assert.match(warnings[1]!, /^townlock: warning: skipping invalid machine "spoof": host /);
    const json = tl([...g, 'machine', 'list', '--json']);
    assert.doesNotMatch(json.out, RAW);
    assert.ok(json.out.includes('\\u009b2J\\u202etown'), json.out);
    assert.deepEqual(
      JSON.parse(json.out).map((m: { name: string }) => m.name),
      ['local', 'ok'],
    );
    const show = tl([...g, 'machine', 'show', 'ok']);
    assert.doesNotMatch(show.out, RAW);
    assert.match(show.out, /^town:\s+\/srv\/\\x9b2J\\u202etown$/m);
    const bad = tl([...g, 'machine', 'show', evil]);
    assert.equal(bad.code, 65);
    assert.doesNotMatch(bad.err, RAW);
    assert.match(bad.err, /^townlock: .*evil.*\[ERR_INVALID_MACHINE\]\n$/);
    for (const name of ['\u009b31mred', 'a\u202ecba', 'new\nline']) {
      const missing = tl([...g, 'machine', 'remove', name]);
      assert.equal(missing.code, 1);
      assert.doesNotMatch(missing.err, RAW);
      assert.equal(missing.err.split('\n').length, 2, 'still one line');
    }
  });

  test('lock status on a hostile lock file: escaped holder info; FIFO and symlink lock files refused fast', async (t) => {
    if (!requireTool(t, 'flock')) return;
    const d = join(tmp.dir, `hostile${++seq}`);
    const lockDir = join(d, '.gastown', 'locks');
    mkdirSync(lockDir, { recursive: true });
    const lockFile = join(lockDir, 'state.json.lock');
    const holder = start('flock', ['-x', lockFile, '-c', 'echo held; read line']);
    await holder.waitFor('held');
    // The holder info line a townlock holder would write, with escape sequences in every field.
    writeFileSync(
      lockFile,
      `${JSON.stringify({ pid: holder.proc.pid, host: 'h\u001b[2J', command: 'x\u001b]0;t\u0007\u009b1m\u202e', since: '\u001bc' })}\n`,
    );
    const status = tl(['lock', 'status', join(d, 'state.json')]);
    assert.equal(status.code, 0, status.err);
    assert.doesNotMatch(status.out, RAW);
    assert.match(status.out, new RegExp(`${holder.proc.pid}\\s+exclusive\\s+\\\\x1bc\\s+x\\\\x1b\\]0;t`));
    const json = tl(['lock', 'status', '--json', d]);
    assert.doesNotMatch(json.out, RAW);
    assert.equal(JSON.parse(json.out).locks[0].holders[0].command, 'x\u001b]0;t\u0007\u009b1m\u202e');
    holder.send('go');
    assert.equal(await holder.exited(), 0);
    spawnSync('mkfifo', [join(lockDir, 'fifo.json.lock')]);
    symlinkSync('/dev/zero', join(lockDir, 'zero.json.lock'));
    for (const [name, code] of [
      ['fifo.json', 'ERR_LOCK_UNSAFE'],
      ['zero.json', 'ERR_LOCK_SYMLINK'],
    ]) {
      const run = tl(['lock', 'run', '-w', '5', join(d, name!), 'echo', 'ran']);
      assert.equal(run.code, 66, `${name}: ${run.err}`);
      assert.equal(run.out, '');
      assert.match(run.err, new RegExp(`\\[${code}\\]\\n$`));
      const st = tl(['lock', 'status', join(d, name!)]);
      assert.equal(st.code, 0, st.err);
      assert.match(st.out, /^not locked: /);
    }
  });
});

describe('what FILE means', () => {
  /** A fresh project directory. */
  const project = () => {
    const d = join(tmp.dir, `what${++seq}`);
    mkdirSync(d);
    return d;
  };

  test('-L FILE is the lock file itself: townlock and flock(1) exclude each other both ways', async (t) => {
    if (!requireTool(t, 'flock')) return;
    const lockFile = join(project(), 'x.lock');
    const flock = start('flock', ['-x', lockFile, '-c', 'echo held; read line']);
    await flock.waitFor('held');
    const busy = tl(['lock', 'run', '-L', '-n', lockFile, '--', 'echo', 'ran']);
    assert.equal(busy.code, 1, busy.err);
    assert.equal(busy.out, '');
    assert.match(busy.err, new RegExp(`${lockFile} is busy \\(held by pid \\d+\\)`));
    flock.send('go');
    assert.equal(await flock.exited(), 0);
    const mine = start(process.execPath, [
      BIN,
      'lock',
      'run',
      '-L',
      lockFile,
      'sh',
      '-c',
      'echo held; read l',
    ]);
    await mine.waitFor('held');
    assert.equal(spawnSync('flock', ['-n', lockFile, 'true']).status, 1, 'flock(1) sees townlock holding it');
    mine.send('go');
    assert.equal(await mine.exited(), 0);
    assert.equal(spawnSync('flock', ['-n', lockFile, 'true']).status, 0);
    assert.ok(!existsSync(join(lockFile, '..', '.gastown')), 'no lock file was made in .gastown/locks');
  });

  test('-L "$0": a script locks itself and runs under its own lock (the idiom of flock(1)\'s manual)', () => {
    // The lock file is opened read-only, as flock(1) opens it: a script open for writing cannot be run.
    const script = join(project(), 'job.sh');
    writeFileSync(
      script,
      `#!/bin/sh\n[ "$FLOCKER" != "$0" ] && exec env FLOCKER="$0" ${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)} lock run -n -L "$0" "$0" "$@" || :\necho "ran under lock: $1"\n`,
    );
    chmodSync(script, 0o755);
    const before = readFileSync(script, 'utf8');
    const r = spawnSync(script, ['yes'], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, 'ran under lock: yes\n');
    assert.equal(readFileSync(script, 'utf8'), before);
  });

  test('-L FILE is never modified: not by holders, not by waiters queueing and being woken', async () => {
    // A data file locked in place keeps its content and its times, and no queue directory stays beside it.
    const d = project();
    const data = join(d, 'data.log');
    writeFileSync(data, 'line0\n');
    utimesSync(data, new Date('2020-01-01T00:00:00Z'), new Date('2020-01-01T00:00:00Z'));
    const before = statSync(data);
    const holder = start(process.execPath, [BIN, 'lock', 'run', '-L', data, 'sh', '-c', 'echo held; read l']);
    await holder.waitFor('held');
    const waiters = [1, 2].map(() => start(process.execPath, [BIN, 'lock', 'run', '-L', data, 'true']));
    // Both waiters queued (their bells are in the queue directory) before the holder lets go.
    const queue = `${data}.waiters`;
    const bells = () => (existsSync(queue) ? readdirSync(queue).filter((n) => n.endsWith('.bell')) : []);
    for (let i = 0; bells().length < 2; i++) {
      assert.ok(i < 1500, 'the waiters queued within 15 s');
      await new Promise((r) => setTimeout(r, 10)); // a condition polled, not a synchronisation by time
    }
    holder.send('go');
    assert.equal(await holder.exited(), 0);
    for (const w of waiters) assert.equal(await w.exited(), 0);
    const after = statSync(data);
    assert.equal(readFileSync(data, 'utf8'), 'line0\n');
    assert.equal(after.mtimeMs, before.mtimeMs, 'not touched');
    assert.equal(after.size, before.size);
    assert.equal(existsSync(queue), false, 'the empty queue directory is removed');
  });

  test('a FILE inside .gastown/locks is the lock file; --protect FILE.lock protects it', async (t) => {
    if (!requireTool(t, 'flock')) return;
    const d = project();
    const lockDir = join(d, '.gastown', 'locks');
    mkdirSync(lockDir, { recursive: true });
    const lockFile = join(lockDir, 'f1.lock');
    const flock = start('flock', ['-x', lockFile, '-c', 'echo held; read line']);
    await flock.waitFor('held');
    assert.equal(tl(['lock', 'run', '-n', lockFile, 'true']).code, 1);
    const status = tl(['lock', 'status', '.gastown/locks/f1.lock'], {}, d);
    assert.equal(status.code, 0, status.err);
    assert.match(status.out, new RegExp(`^${lockFile}\\s+${flock.proc.pid}\\s+exclusive`, 'm'));
    flock.send('go');
    assert.equal(await flock.exited(), 0);
    assert.equal(tl(['lock', 'run', '--protect', 'data.lock', 'true'], {}, d).code, 0);
    assert.ok(existsSync(join(lockDir, 'data.lock.lock')));
  });

  test('a *.lock FILE outside .gastown/locks is ambiguous, a directory is refused: 64, nothing created', () => {
    const d = project();
    const ambiguous = tl(['lock', 'run', '-n', join(d, 'x.lock'), 'true']);
    assert.equal(ambiguous.code, 64);
    assert.match(ambiguous.err, /is ambiguous: it may be a lock file or a file to protect; /);
    assert.match(ambiguous.err, /'townlock lock run -L .*x\.lock \.\.\.' to lock it as flock\(1\) does/);
    assert.match(ambiguous.err, /'townlock lock run --protect .*x\.lock \.\.\.' to protect it/);
    assert.equal(tl(['lock', 'status', join(d, 'x.lock')]).code, 64, 'status decides the same way');
    for (const args of [
      ['lock', 'run', '.', 'true'],
      ['lock', 'run', '-L', '.', 'true'],
      ['lock', 'run', '--protect', '.', 'true'],
      ['lock', 'status', '-L', '.'],
    ]) {
      const r = tl(args, {}, d);
      assert.equal(r.code, 64, args.join(' '));
      assert.match(r.err, /^townlock: \. is a directory; /, args.join(' '));
    }
    assert.deepEqual(readdirSync(d), [], 'no lock file anywhere');
    assert.equal(tl(['lock', 'run', '-L', '--protect', 'f', 'true'], {}, d).code, 64);
  });

  test('status and clean: a FILE or DIR that does not exist is 66; a lock file may be named directly', async () => {
    const d = project();
    for (const args of [
      ['lock', 'status', '/nonexistdir/'],
      ['lock', 'status', join(d, 'nofile')],
      ['lock', 'status', '-L', join(d, 'nofile.lock')],
      ['lock', 'clean', join(d, 'nope')],
      ['lock', 'clean', '/nonexistdir/'],
    ]) {
      const r = tl(args);
      assert.equal(r.code, 66, args.join(' '));
      assert.match(r.err, /: no such file or directory \[ENOENT\]\n$|does not exist \[ERR_LOCK_DIR\]\n$/);
    }
    writeFileSync(join(d, 'Cargo.lock'), 'keep');
    const foreign = tl(['lock', 'clean', '-L', join(d, 'Cargo.lock')]);
    assert.equal(foreign.code, 66);
    assert.match(foreign.err, /it is not in a \.gastown\/locks directory \[ERR_LOCK_DIR\]/);
    assert.equal(readFileSync(join(d, 'Cargo.lock'), 'utf8'), 'keep');
    assert.equal(
      tl(['lock', 'status', d]).out,
      'no locks held (0 lock files)\n',
      'Cargo.lock is not a lock file',
    );
    const file = join(d, 'state.json');
    const holder = fixture('hold.mjs', [file, 'exclusive']);
    await holder.waitFor('held');
    const lockFile = join(d, '.gastown', 'locks', 'state.json.lock');
    assert.match(
      tl(['lock', 'status', file]).out,
      /state\.json\.lock\s+\d+\s+exclusive/,
      'FILE need not exist',
    );
    assert.equal(tl(['lock', 'clean', file]).out, `kept ${lockFile}: a process holds it or has it open\n`);
    holder.send('release');
    await holder.exited();
    assert.equal(tl(['lock', 'clean', '.gastown/locks/state.json.lock'], {}, d).out, `removed ${lockFile}\n`);
    assert.ok(!existsSync(lockFile));
    assert.equal(tl(['lock', 'status', file]).code, 66, 'neither FILE nor its lock file exists');
    assert.equal(tl(['lock', 'clean', file]).code, 66);
    writeFileSync(file, '{}');
    assert.equal(tl(['lock', 'status', file]).out, `not locked: ${lockFile}\n`);
  });
});

describe('file names that are not UTF-8', () => {
  test("lock run $'data\\xff' takes the lock flock(1) takes on $'.gastown/locks/data\\xff.lock'", async (t) => {
    if (!requireTool(t, 'flock')) return;
    const d = join(tmp.dir, `bytes${++seq}`);
    mkdirSync(join(d, '.gastown', 'locks'), { recursive: true });
    // Names spelled with printf's octal escapes: Node's argv cannot carry the bytes to a child.
    const townlock = (args: string) =>
      spawnSync('sh', ['-c', `"$0" "$1" ${args}`, process.execPath, BIN], {
        cwd: d,
        encoding: 'utf8',
        env: { PATH: process.env.PATH, HOME: tmp.dir },
        timeout: 30_000,
      });
    const holder = start('sh', [
      '-c',
      'cd "$1" && exec flock -x "$(printf ".gastown/locks/data\\377.lock")" -c "echo held; read line"',
      'sh',
      d,
    ]);
    await holder.waitFor('held');
    const busy = townlock('lock run -n "$(printf "data\\377")" true');
    assert.equal(busy.status, 1, busy.stderr);
    const status = townlock('lock status "$(printf "data\\377")"');
    assert.match(status.stdout, new RegExp(`data\ufffd\\.lock\\s+${holder.proc.pid}\\s+exclusive`));
    const direct = townlock('lock run -L -n "$(printf ".gastown/locks/data\\377.lock")" true');
    assert.equal(direct.status, 1, direct.stderr);
    holder.send('go');
    assert.equal(await holder.exited(), 0);
    const ran = townlock('lock run -n "$(printf "data\\377")" echo ran');
    assert.equal(ran.status, 0, ran.stderr);
    assert.equal(ran.stdout, 'ran\n');
    const names = readdirSync(Buffer.from(join(d, '.gastown', 'locks')), { encoding: 'buffer' });
    assert.deepEqual(
      names.map((n) => n.toString('hex')),
      [Buffer.from([...Buffer.from('data'), 0xff, ...Buffer.from('.lock')]).toString('hex')],
      'one lock file, named with the raw byte, never U+FFFD',
    );
  });
});

describe('lock status and clean', () => {
  test('status shows holders in a table and as JSON; clean removes unheld lock files', async () => {
    const dir = join(tmp.dir, `status${++seq}`);
    mkdirSync(dir);
    const file = join(dir, 'state.json');
    const holder = fixture('hold.mjs', [file, 'exclusive']);
    await holder.waitFor('held');
    await new FileLock(join(dir, 'other.json')).withLock(() => {});
    await new Promise((resolve) => setImmediate(resolve)); // this process's idle descriptor closes
    const table = tl(['lock', 'status', file]);
    assert.equal(table.code, 0);
    assert.match(table.out, /^LOCK\s+PID\s+MODE\s+SINCE\s+COMMAND\n/);
    assert.match(table.out, new RegExp(`state\\.json\\.lock\\s+${holder.proc.pid}\\s+exclusive`));
    const json = JSON.parse(tl(['lock', 'status', dir, '--json']).out);
    assert.equal(json.locks.length, 2);
    const held = json.locks.find((l: { lockPath: string }) => l.lockPath.endsWith('state.json.lock'));
    assert.equal(held.holders[0].pid, holder.proc.pid);
    assert.equal(held.holders[0].mode, 'exclusive');
    assert.match(held.holders[0].command, /hold\.mjs/);
    const clean = tl(['lock', 'clean', dir]);
    assert.equal(clean.code, 0);
    assert.match(clean.out, /removed 1 unused lock file/);
    assert.ok(existsSync(join(dir, '.gastown', 'locks', 'state.json.lock')));
    assert.ok(!existsSync(join(dir, '.gastown', 'locks', 'other.json.lock')));
    holder.send('release');
    await holder.exited();
    assert.match(tl(['lock', 'status', dir]).out, /no locks held \(1 lock file\)/);
    assert.equal(
      tl(['lock', 'status', file]).out,
      `not locked: ${join(dir, '.gastown', 'locks', 'state.json.lock')}\n`,
    );
  });

  test("clean never touches a project's own *.lock files, and a missing DIR is an error", () => {
    const dir = join(tmp.dir, `project${++seq}`);
    mkdirSync(dir);
    for (const name of ['Cargo.lock', 'yarn.lock', 'Gemfile.lock']) writeFileSync(join(dir, name), name);
    const clean = tl(['lock', 'clean', dir]);
    assert.equal(clean.code, 0);
    assert.match(clean.out, /removed 0 unused lock files/);
    for (const name of ['Cargo.lock', 'yarn.lock', 'Gemfile.lock'])
      assert.ok(existsSync(join(dir, name)), name);
    const missing = tl(['lock', 'clean', join(dir, 'nope')]);
    assert.equal(missing.code, 66);
    assert.match(missing.err, /^townlock: cannot open .*nope: no such file or directory \[ENOENT\]\n$/);
  });
});
