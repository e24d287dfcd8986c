/**
 * `townlock machine import FILE` and `machine export [FILE]` between registry files, as a user runs them:
 * entries copied whole (unknown fields, integers beyond 2^53, invalid entries), import merges, export makes
 * FILE exactly the registry, and nothing is written on bad input. The etcd side is in
 * test/etcd/cli-registry.test.ts.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { MachineRegistry } from '../../src/registry/index.js';
import { DIST, tempDir } from '../multiprocess/helpers.js';

const BIN = resolve(DIST, '..', 'bin', 'townlock.js');
const tmp = tempDir('townlock-cli-transfer-');
after(tmp.remove);
let seq = 0;
const fresh = (name: string) => {
  const dir = join(tmp.dir, String(++seq));
  mkdirSync(dir);
  return join(dir, name);
};

function tl(args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    cwd: tmp.dir,
    env: { PATH: process.env.PATH, HOME: tmp.dir },
    encoding: 'utf8',
    timeout: 30_000,
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** A Go-format file with what this version does not know: an unknown field, a huge integer, a bad entry. */
const GO_FILE = `{
  "version": 1,
  "machines": {
    "bad": {"name": "bad", "type": "ssh", "host": "-oProxyCommand=touch /tmp/x"},
    "build-01": {
      "name": "build-01",
      "type": "ssh",
      "host": "deploy@build-01:2222",
      "key_path": "",
      "town_path": "/srv/town",
      "gpu": {"count": 9007199254740993}
    },
    "local": {
      "name": "local",
      "type": "local",
      "host": "",
      "key_path": "",
      "town_path": ""
    }
  }
}`;

test('export prints the registry in the Go format; export FILE writes those bytes; they round-trip', () => {
  const reg = fresh('machines.json');
  writeFileSync(reg, GO_FILE);
  const printed = tl(['machine', 'export', '--registry', reg]);
  assert.equal(printed.code, 0, printed.err);
  assert.equal(printed.out, `${GO_FILE}\n`, 'byte for byte what the Go tool writes (and a newline)');
  assert.equal(tl(['machine', 'export', '--registry', reg, '-']).out, printed.out);
  const copy = fresh('copy.json');
  const written = tl(['machine', 'export', '--registry', reg, copy]);
  assert.equal(written.code, 0, written.err);
  assert.match(written.out, /^exported 3 machines to .*copy\.json: 2 added, 0 replaced, 1 unchanged\n$/);
  assert.equal(readFileSync(copy, 'utf8'), GO_FILE);
});

test('import merges: machines of FILE added or replaced, others kept, entries copied whole', async () => {
  const source = fresh('go.json');
  writeFileSync(source, GO_FILE);
  const target = fresh('machines.json');
  assert.equal(tl(['machine', 'add', '--registry', target, 'keep-me', '--host', 'k']).code, 0);
  assert.equal(tl(['machine', 'add', '--registry', target, 'build-01', '--host', 'old-host']).code, 0);
  const r = tl(['machine', 'import', '--registry', target, source]);
  assert.equal(r.code, 0, r.err);
  assert.match(
    r.out,
    /^imported 2 machines from .*go\.json into .*machines\.json: 1 added, 1 replaced, 0 unchanged\n$/,
  );
  assert.match(r.err, /importing invalid machine "bad" as written \(kept, not served\): host/);
  const reg = await MachineRegistry.open(target);
  assert.deepEqual(
    reg.list().map((m) => m.name),
    ['build-01', 'keep-me', 'local'],
  );
  assert.equal(reg.get('build-01').host, 'deploy@build-01:2222');
  assert.deepEqual(
    reg.invalid().map((e) => e.machine),
    ['bad'],
  );
  const text = readFileSync(target, 'utf8');
  assert.match(text, /"gpu": \{"count": 9007199254740993\}/, 'unknown field kept byte for byte');
  assert.match(text, /"bad": \{"name": "bad", "type": "ssh", "host": "-oProxyCommand=touch \/tmp\/x"\}/);
  // Again: nothing changes.
  assert.match(
    tl(['machine', 'import', '--registry', target, source]).out,
    /0 added, 0 replaced, 2 unchanged/,
  );
  assert.equal(readFileSync(target, 'utf8'), text);
});

test('export FILE makes FILE exactly the registry (removing what it lacks) and keeps its top-level fields', () => {
  const reg = fresh('machines.json');
  assert.equal(tl(['machine', 'add', '--registry', reg, 'a', '--host', 'a']).code, 0);
  const out = fresh('backup.json');
  writeFileSync(
    out,
    '{"version": 1, "machines": {"stale": {"name": "stale", "type": "local"}}, "note": "mine"}',
  );
  const r = tl(['machine', 'export', '--registry', reg, out]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /1 added, 0 replaced, 1 unchanged, 1 removed/);
  const written = JSON.parse(readFileSync(out, 'utf8'));
  assert.deepEqual(Object.keys(written.machines), ['a', 'local']);
  assert.equal(written.note, 'mine');
});

test('export FILE makes FILE even when the registry holds only the built-in local', () => {
  const reg = fresh('machines.json');
  const out = fresh('backup.json');
  const r = tl(['machine', 'export', '--registry', reg, out]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /exported 1 machine to .*backup\.json/);
  assert.deepEqual(Object.keys(JSON.parse(readFileSync(out, 'utf8')).machines), ['local']);
  assert.equal(readFileSync(out, 'utf8'), tl(['machine', 'export', '--registry', reg]).out.trimEnd());
});

test('bad input: FILE missing 66, not a registry 65, a newer version 65; nothing is written', () => {
  const reg = fresh('machines.json');
  assert.equal(tl(['machine', 'add', '--registry', reg, 'a', '--host', 'a']).code, 0);
  const before = readFileSync(reg, 'utf8');
  const missing = tl(['machine', 'import', '--registry', reg, join(tmp.dir, 'absent.json')]);
  assert.equal(missing.code, 66);
  assert.match(missing.err, /cannot open registry file .*absent\.json: no such file or directory \[ENOENT\]/);
  const notRegistry = fresh('package.json');
  writeFileSync(notRegistry, '{"name": "x", "machines": [1]}');
  assert.equal(tl(['machine', 'import', '--registry', reg, notRegistry]).code, 65);
  const newer = fresh('newer.json');
  writeFileSync(newer, '{"version": 99, "machines": {}}');
  const v = tl(['machine', 'import', '--registry', reg, newer]);
  assert.equal(v.code, 65);
  assert.match(v.err, /ERR_REGISTRY_VERSION/);
  assert.equal(readFileSync(reg, 'utf8'), before);
  // export over a file that is not a registry: refused, untouched.
  const precious = fresh('Cargo.lock');
  writeFileSync(precious, '# not JSON\n');
  assert.equal(tl(['machine', 'export', '--registry', reg, precious]).code, 65);
  assert.equal(readFileSync(precious, 'utf8'), '# not JSON\n');
  // A JSON object that is not a registry (no "machines") is neither imported nor overwritten.
  const tsconfig = fresh('tsconfig.json');
  writeFileSync(tsconfig, '{\n "compilerOptions": {"strict": true}\n}\n');
  const over = tl(['machine', 'export', '--registry', reg, tsconfig]);
  assert.equal(over.code, 65);
  assert.match(over.err, /it is not a registry file: it has no "machines"/);
  assert.equal(readFileSync(tsconfig, 'utf8'), '{\n "compilerOptions": {"strict": true}\n}\n');
  assert.equal(tl(['machine', 'import', '--registry', reg, tsconfig]).code, 65);
  assert.equal(tl(['machine', 'list', '--registry', tsconfig]).code, 65);
  assert.equal(readFileSync(reg, 'utf8'), before);
  assert.equal(tl(['machine', 'import', '--registry', reg]).code, 64);
  assert.equal(tl(['machine', 'export', '--registry', reg, 'a', 'b']).code, 64);
});
