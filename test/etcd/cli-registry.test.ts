/**
 * The machine commands on the registry on etcd, run as a user runs them: `--registry etcd://...` and
 * TOWNLOCK_REGISTRY for every machine command, the library seeing the same registry, concurrent adds
 * from many shells, and migration with `machine import` / `machine export` (entries copied whole).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { Etcd } from '../../src/etcd/index.js';
import { DIST, tempDir } from '../multiprocess/helpers.js';
import { startEtcd, useEtcd } from './etcd-server.js';

const BIN = resolve(DIST, '..', 'bin', 'townlock.js');
const etcd = useEtcd();
const tmp = tempDir('townlock-etcd-cli-reg-');
after(tmp.remove);
let seq = 0;
const prefix = () => `clireg-${process.pid}-${++seq}`;
const url = (p: string) => `etcd://${etcd.cluster.endpoints().join(',')}/${p}`;

function tl(args: string[], env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    cwd: tmp.dir,
    env: { PATH: process.env.PATH, HOME: tmp.dir, ...env },
    encoding: 'utf8',
    timeout: 30_000,
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

test('every machine command works on --registry etcd://; the library sees the same registry', async (t) => {
  if (!etcd.ready(t)) return;
  const p = prefix();
  const reg = ['--registry', url(p)];
  assert.equal(
    tl(['machine', 'add', ...reg, 'build-01', '--host', 'deploy@b1:2222', '--town', '/srv/t']).code,
    0,
  );
  assert.equal(tl([...reg, 'machine', 'add', 'build-02', '--host', 'b2']).code, 0, 'global --registry too');
  const list = tl(['machine', 'list', ...reg, '--json']);
  assert.equal(list.code, 0, list.err);
  assert.deepEqual(
    (JSON.parse(list.out) as { name: string }[]).map((m) => m.name),
    ['build-01', 'build-02', 'local'],
  );
  const show = tl(['machine', 'show', ...reg, 'build-01']);
  assert.match(show.out, /host: {2}deploy@b1:2222/);
  // The same registry through TOWNLOCK_REGISTRY, and through the library with the documented mapping.
  assert.match(tl(['machine', 'list'], { TOWNLOCK_REGISTRY: url(p) }).out, /build-02/);
  const lib = await Etcd.connect({ endpoints: etcd.cluster.endpoints(), prefix: `${p}/` });
  try {
    const registry = await lib.registry('machines');
    assert.equal(registry.get('build-01').townPath, '/srv/t');
    assert.equal(tl(['machine', 'remove', ...reg, 'build-02']).code, 0);
    await registry.reload();
    assert.equal(registry.has('build-02'), false);
  } finally {
    await lib.close();
  }
  const missing = tl(['machine', 'show', ...reg, 'nope']);
  assert.equal(missing.code, 1);
  assert.match(missing.err, /ERR_MACHINE_NOT_FOUND/);
  assert.equal(tl(['machine', 'remove', ...reg, 'local']).code, 1);
  const exec = tl(['machine', 'exec', ...reg, 'local', 'echo', 'on local']);
  assert.equal(exec.code, 0, exec.err);
  assert.equal(exec.out, 'on local\n');
});

test('concurrent machine add from many shells on etcd: every machine is there', async (t) => {
  if (!etcd.ready(t)) return;
  const p = prefix();
  const procs = Number(process.env.TOWNLOCK_CLI_PROCS ?? 8);
  const codes = await Promise.all(
    Array.from(
      { length: procs },
      (_, i) =>
        new Promise<number | null>((done) =>
          spawn(process.execPath, [BIN, 'machine', 'add', '--registry', url(p), `m${i}`, '--host', `h${i}`], {
            stdio: 'ignore',
          }).on('close', done),
        ),
    ),
  );
  assert.deepEqual(codes, Array(procs).fill(0));
  const names = (
    JSON.parse(tl(['machine', 'list', '--json', '--registry', url(p)]).out) as { name: string }[]
  ).map((m) => m.name);
  assert.equal(names.length, procs + 1);
});

test('migration: import a Go-format file into etcd, export it back: the same bytes', (t) => {
  if (!etcd.ready(t)) return;
  const dir = join(tmp.dir, prefix());
  mkdirSync(dir);
  const goFile = join(dir, 'machines.json');
  writeFileSync(
    goFile,
    `{
  "version": 1,
  "machines": {
    "bad": {"name": "bad", "type": "k8s"},
    "build-01": {
      "name": "build-01",
      "type": "ssh",
      "host": "deploy@build-01:2222",
      "key_path": "~/.ssh/id_ed25519",
      "town_path": "/srv/town",
      "labels": {"pool": ["ci"], "id": 12345678901234567890}
    },
    "local": {
      "name": "local",
      "type": "local",
      "host": "",
      "key_path": "",
      "town_path": ""
    }
  }
}`,
  );
  const p = prefix();
  const imported = tl(['machine', 'import', '--registry', url(p), goFile]);
  assert.equal(imported.code, 0, imported.err);
  assert.match(imported.out, /imported 2 machines .* into etcd:\/\/.*: 2 added, 0 replaced, 0 unchanged/);
  assert.match(imported.err, /importing invalid machine "bad"/);
  // The invalid entry is kept on etcd but not served.
  const listed = tl(['machine', 'list', '--registry', url(p)]);
  assert.doesNotMatch(listed.out, /^bad /m);
  assert.match(listed.err, /skipping invalid machine "bad"/);
  const exported = tl(['machine', 'export', '--registry', url(p)]);
  assert.equal(exported.code, 0, exported.err);
  assert.equal(exported.out, `${readFileSync(goFile, 'utf8')}\n`);
  const back = join(dir, 'back.json');
  assert.equal(tl(['machine', 'export', '--registry', url(p), back]).code, 0);
  assert.equal(readFileSync(back, 'utf8'), readFileSync(goFile, 'utf8'));
  // Importing the same file again changes nothing.
  assert.match(
    tl(['machine', 'import', '--registry', url(p), goFile]).out,
    /0 added, 0 replaced, 2 unchanged/,
  );
});

test('import of more machines than one etcd transaction holds: in several transactions, all there', (t) => {
  if (!etcd.ready(t)) return;
  const dir = join(tmp.dir, prefix());
  mkdirSync(dir);
  const big = join(dir, 'big.json');
  const machines = Object.fromEntries(
    Array.from({ length: 300 }, (_, i) => [`m${i}`, { name: `m${i}`, type: 'ssh', host: `h${i}` }]),
  );
  writeFileSync(big, JSON.stringify({ version: 1, machines }));
  const p = prefix();
  const r = tl(['machine', 'import', '--registry', url(p), big]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /imported 300 machines .*: 300 added, 0 replaced, 0 unchanged \(in 3 transactions/);
  const listed = JSON.parse(tl(['machine', 'list', '--json', '--registry', url(p)]).out) as unknown[];
  assert.equal(listed.length, 301);
  assert.match(
    tl(['machine', 'import', '--registry', url(p), big]).out,
    /0 added, 0 replaced, 300 unchanged\n$/,
  );
  const exported = JSON.parse(tl(['machine', 'export', '--registry', url(p)]).out) as { machines: object };
  assert.equal(Object.keys(exported.machines).length, 301);
});

test('import into a cluster whose --max-txn-ops is below the client limit: the parts shrink until they fit', async (t) => {
  if (!etcd.ready(t)) return;
  const small = await startEtcd({ extraArgs: ['--max-txn-ops', '16'] });
  try {
    const dir = join(tmp.dir, prefix());
    mkdirSync(dir);
    const file = join(dir, 'm.json');
    const machines = Object.fromEntries(
      Array.from({ length: 50 }, (_, i) => [`m${i}`, { name: `m${i}`, type: 'ssh', host: `h${i}` }]),
    );
    writeFileSync(file, JSON.stringify({ version: 1, machines }));
    const at = `etcd://${small.endpoints().join(',')}/small`;
    const r = tl(['machine', 'import', '--registry', at, file]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, /50 added, 0 replaced, 0 unchanged \(in \d+ transactions/);
    assert.equal(
      (JSON.parse(tl(['machine', 'list', '--json', '--registry', at]).out) as unknown[]).length,
      51,
    );
  } finally {
    await small.stop();
  }
});

test('etcd unreachable is 75; a bad etcd:// registry is a usage error naming where it came from', (t) => {
  if (!etcd.ready(t)) return;
  const down = tl(['machine', 'list', '--registry', 'etcd://127.0.0.1:1/x']);
  assert.equal(down.code, 75);
  assert.match(down.err, /ERR_ETCD_UNAVAILABLE/);
  const bad = tl(['machine', 'list', '--registry', 'etcd://nohost/x']);
  assert.equal(bad.code, 64);
  assert.match(
    bad.err,
    /--registry: "nohost" .* is not an etcd endpoint HOST:PORT; write e\.g\. '--registry etcd:\/\//,
  );
  // Another scheme, or a mistyped one, is never taken for a relative file path (and created).
  for (const bad of ['http://127.0.0.1:2379/x', 'etcd:/127.0.0.1:2379/x', 'file:///tmp/r.json']) {
    const r = tl(['machine', 'add', '--registry', bad, 'm', '--host', 'h']);
    assert.equal(r.code, 64, bad);
    assert.match(r.err, /is neither a file path nor an etcd:\/\/HOST:PORT\[\/PREFIX\] URL/);
  }
  assert.equal(existsSync(join(tmp.dir, 'http:')), false);
  assert.equal(existsSync(join(tmp.dir, 'etcd:')), false);
  assert.equal(tl(['machine', 'list', '--registry', `ETCD://${etcd.cluster.endpoints()[0]}/caps`]).code, 0);
  const env = tl(['machine', 'list'], { TOWNLOCK_REGISTRY: 'etcd://' });
  assert.equal(env.code, 64);
  assert.match(env.err, /TOWNLOCK_REGISTRY: "" in "etcd:\/\/"/);
});
