/**
 * MachineRegistry's file: creation, format, write failures and bad files. The behaviour every registry
 * shares (adds, removes, updates, group commit, validation, unknown fields, invalid entries) is the
 * contract in test/conformance/registry-contract.ts, run for this registry and the etcd one.
 */
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { scratchDir } from '../../test/scratch-dir.js';
import { ops } from '../atomic/_fs-ops.js';
import { MachineRegistry, RegistryCorruptError, RegistryVersionError } from './index.js';

const root = scratchDir('townlock-registry-');
const goFixture = join(dirname(fileURLToPath(import.meta.url)), '../../test/fixtures/go-registry.json');
let seq = 0;
/** A registry path in a fresh directory (the file does not exist). */
const freshPath = () => join(root, `r${++seq}`, 'machines.json');

describe('open and read', () => {
  test('a missing file reads as just local, and nothing is created', async () => {
    const path = freshPath();
    const reg = await MachineRegistry.open(path);
    assert.deepEqual(reg.list(), [{ name: 'local', type: 'local' }]);
    assert.ok(reg.has('local'));
    assert.equal(existsSync(dirname(path)), false);
  });

  test('reads see another writer\u2019s change without reload (fingerprint refresh)', async () => {
    const path = freshPath();
    const a = await MachineRegistry.open(path);
    const b = await MachineRegistry.open(path);
    await a.add({ name: 'from-a', type: 'ssh', host: 'a' });
    assert.ok(b.has('from-a'));
    await b.remove('from-a');
    assert.equal(a.has('from-a'), false);
    await b.reload();
    assert.equal(b.list().length, 1);
  });
});

describe('bad arguments', () => {
  test('names must be strings and options objects: ERR_INVALID_OPTION, not a TypeError', async () => {
    const reg = await MachineRegistry.open(freshPath());
    assert.throws(() => reg.get(10n as never), { code: 'ERR_INVALID_OPTION', message: /name/ });
    assert.throws(() => reg.has({} as never), { code: 'ERR_INVALID_OPTION', message: /name/ });
    await assert.rejects(reg.remove(5 as never), { code: 'ERR_INVALID_OPTION', message: /name/ });
    assert.throws(() => reg.connection('local', null as never), {
      code: 'ERR_INVALID_OPTION',
      message: /options/,
    });
    assert.throws(() => reg.localConnection(null as never), {
      code: 'ERR_INVALID_OPTION',
      message: /options/,
    });
    await assert.rejects(
      reg.update((d) => d.get(1n as never)),
      { code: 'ERR_INVALID_OPTION' },
    );
  });

  test('open needs a path and update a function (ERR_INVALID_OPTION)', async () => {
    await assert.rejects(MachineRegistry.open(''), { code: 'ERR_INVALID_OPTION', message: /path/ });
    const reg = await MachineRegistry.open(freshPath());
    await assert.rejects(reg.update('nope' as never), { code: 'ERR_INVALID_OPTION', message: /fn/ });
  });
});

describe('write failures', () => {
  test('a failed write is reported to every caller and leaves no phantom change in memory or on disk', async () => {
    const path = freshPath();
    const reg = await MachineRegistry.open(path);
    await reg.add({ name: 'kept', type: 'ssh', host: 'kept' });
    const before = readFileSync(path, 'utf8');
    const realRename = ops.rename;
    ops.rename = async () => {
      throw Object.assign(new Error('injected rename failure'), { code: 'EIO' });
    };
    try {
      const results = await Promise.allSettled([
        reg.add({ name: 'lost1', type: 'ssh', host: 'l1' }),
        reg.remove('kept'),
      ]);
      for (const r of results) {
        assert.equal(r.status, 'rejected');
        assert.equal((r as PromiseRejectedResult).reason.code, 'ERR_REGISTRY_IO');
      }
    } finally {
      ops.rename = realRename;
    }
    assert.equal(readFileSync(path, 'utf8'), before);
    assert.equal(reg.has('lost1'), false);
    assert.equal(reg.has('kept'), true);
    assert.deepEqual(
      readdirSync(dirname(path)).filter((n) => n.includes('.tmp-')),
      [],
    );
    await reg.add({ name: 'after', type: 'ssh', host: 'a' });
    assert.deepEqual(
      reg.list().map((m) => m.name),
      ['after', 'kept', 'local'],
    );
  });
});

describe('file format', () => {
  test('invalid() lists entries sorted by name, after this process wrote as after a fresh open', async () => {
    const path = freshPath();
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, '{"version": 1, "machines": {"b": {"type": "ssh", "host": "bad host"}, "a": 7}}');
    const reg = await MachineRegistry.open(path);
    await reg.add({ name: 'c', type: 'ssh', host: 'c.example' });
    const names = (r: MachineRegistry) => r.invalid().map((e) => e.machine);
    assert.deepEqual(names(reg), ['a', 'b']);
    assert.deepEqual(names(await MachineRegistry.open(path)), ['a', 'b']);
  });

  test('is the Go tool\u2019s: 2-space indent, all fields, sorted, no trailing newline', async () => {
    const path = freshPath();
    const reg = await MachineRegistry.open(path);
    await reg.add({ name: 'web', type: 'ssh', host: 'u@web:22', keyPath: '/k', townPath: '/t' });
    assert.equal(
      readFileSync(path, 'utf8'),
      [
        '{',
        '  "version": 1,',
        '  "machines": {',
        '    "local": {',
        '      "name": "local",',
        '      "type": "local",',
        '      "host": "",',
        '      "key_path": "",',
        '      "town_path": ""',
        '    },',
        '    "web": {',
        '      "name": "web",',
        '      "type": "ssh",',
        '      "host": "u@web:22",',
        '      "key_path": "/k",',
        '      "town_path": "/t"',
        '    }',
        '  }',
        '}',
      ].join('\n'),
    );
  });

  test('a Go-format file with unknown fields round-trips byte for byte', async () => {
    const path = freshPath();
    mkdirSync(dirname(path), { recursive: true });
    copyFileSync(goFixture, path);
    const original = readFileSync(path, 'utf8');
    const reg = await MachineRegistry.open(path);
    assert.equal(reg.get('build-01').keyPath, '~/.ssh/id_ed25519');
    // A machine type from a newer tool (and a name this version does not allow) is kept, not served.
    assert.throws(() => reg.get('r&d'), { code: 'ERR_INVALID_MACHINE', message: /"r&d"/ });
    await reg.add({ name: 'tmp', type: 'ssh', host: 'tmp' });
    const parsed = JSON.parse(readFileSync(path, 'utf8'));
    assert.deepEqual(parsed.machines['build-01'].labels, { arch: 'arm64', pool: ['ci', 'nightly'] });
    assert.equal(parsed.updated_by, 'gt 2.1');
    // Replacing a machine keeps the fields a newer tool added to it.
    await reg.add({
      name: 'build-01',
      type: 'ssh',
      host: 'deploy@build-01.example.com:2222',
      keyPath: '~/.ssh/id_ed25519',
      townPath: '/srv/town',
    });
    await reg.remove('tmp');
    assert.equal(readFileSync(path, 'utf8'), original);
  });

  test('a large registry (written in pieces between event-loop turns) round-trips byte for byte', async () => {
    const path = freshPath();
    mkdirSync(dirname(path), { recursive: true });
    const machines: Record<string, object> = {
      local: { name: 'local', type: 'local', host: '', key_path: '', town_path: '' },
    };
    for (let i = 0; i < 1234; i++) {
      const name = `m${String(i).padStart(5, '0')}`;
      machines[name] = { name, type: 'ssh', host: `u@${name}:22`, key_path: '/k', town_path: `/t/${i}` };
    }
    const original = JSON.stringify({ version: 1, machines }, null, 2);
    writeFileSync(path, original);
    const reg = await MachineRegistry.open(path);
    await reg.add({ name: 'zz', type: 'ssh', host: 'zz' });
    const withZz = JSON.parse(readFileSync(path, 'utf8'));
    assert.equal(Object.keys(withZz.machines).length, 1236);
    assert.deepEqual(withZz.machines.m00777, machines.m00777);
    await reg.remove('zz');
    assert.equal(readFileSync(path, 'utf8'), original);
  });
});

describe('bad files are never overwritten', () => {
  const bad: [string, string, string, number | undefined][] = [
    ['empty', '', 'ERR_REGISTRY_CORRUPT', 0],
    ['truncated', '{\n  "version": 1,\n  "machines": {\n    "a": {"na', 'ERR_REGISTRY_CORRUPT', 47],
    ['not an object', '[1, 2]', 'ERR_REGISTRY_CORRUPT', undefined],
    ['null', 'null', 'ERR_REGISTRY_CORRUPT', undefined],
    ['machines not an object', '{"version": 1, "machines": []}', 'ERR_REGISTRY_CORRUPT', undefined],
    ['string version', '{"version": "1", "machines": {}}', 'ERR_REGISTRY_CORRUPT', undefined],
    ['newer version', '{"version": 2, "machines": {}}', 'ERR_REGISTRY_VERSION', undefined],
  ];
  for (const [what, content, code, position] of bad) {
    test(`${what}: ${code} on open and on every write; bytes unchanged`, async () => {
      const path = freshPath();
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, content);
      const err = await MachineRegistry.open(path).then(
        () => assert.fail('open should fail'),
        (e: unknown) => e as RegistryCorruptError,
      );
      assert.equal(err.code, code);
      assert.equal(err.path, path);
      assert.ok(
        err instanceof (code === 'ERR_REGISTRY_VERSION' ? RegistryVersionError : RegistryCorruptError),
      );
      if (position !== undefined) assert.equal(err.position, position);
      assert.match(err.message, new RegExp(path));

      // A registry opened before the file went bad refuses to write over it.
      const p2 = freshPath();
      const reg = await MachineRegistry.open(p2);
      mkdirSync(dirname(p2), { recursive: true });
      writeFileSync(p2, content);
      await assert.rejects(reg.add({ name: 'x', type: 'ssh', host: 'x' }), { code });
      await assert.rejects(reg.remove('x'), { code });
      await assert.rejects(
        reg.update(() => 1),
        { code },
      );
      assert.equal(readFileSync(p2, 'utf8'), content);
      assert.deepEqual(
        readdirSync(dirname(p2)).filter((n) => n !== '.gastown'),
        ['machines.json'],
      );
    });
  }

  test('a directory in place of the file gives ERR_REGISTRY_IO', async () => {
    const path = freshPath();
    mkdirSync(path, { recursive: true });
    await assert.rejects(MachineRegistry.open(path), { code: 'ERR_REGISTRY_IO', message: /is a directory/ });
  });

  test('a directory the writer may not write gives ERR_REGISTRY_IO (permission denied)', async () => {
    // sysfs refuses new files even to root, so this holds whoever runs the tests.
    const reg = await MachineRegistry.open('/sys/kernel/townlock-test/machines.json');
    assert.deepEqual(reg.list(), [{ name: 'local', type: 'local' }]);
    await assert.rejects(reg.add({ name: 'x', type: 'local' }), {
      code: 'ERR_REGISTRY_IO',
      message: /Cannot write registry .*machines\.json: permission denied \(E(ACCES|PERM)\)/,
    });
  });

  test('a file in place of the parent directory gives ERR_REGISTRY_IO', async () => {
    const parent = join(root, `plain${++seq}`);
    writeFileSync(parent, 'x');
    const reg = await MachineRegistry.open(join(parent, 'machines.json')).catch((e: unknown) => e);
    if (reg instanceof MachineRegistry) {
      await assert.rejects(reg.add({ name: 'x', type: 'ssh', host: 'x' }), { code: /ERR_/ });
    } else {
      assert.equal((reg as { code: string }).code, 'ERR_REGISTRY_IO');
    }
    assert.equal(readFileSync(parent, 'utf8'), 'x');
  });
});
