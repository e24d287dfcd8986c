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

  test('get, has and list (sorted) after add; add replaces; get returns copies', async () => {
    const reg = await MachineRegistry.open(freshPath());
    await reg.add({ name: 'zeta', type: 'ssh', host: 'z@zeta' });
    await reg.add({ name: 'alpha', type: 'ssh', host: 'a@alpha:2200', keyPath: '~/.ssh/k', townPath: '/t' });
    assert.deepEqual(
      reg.list().map((m) => m.name),
      ['alpha', 'local', 'zeta'],
    );
    assert.deepEqual(reg.get('alpha'), {
      name: 'alpha',
      type: 'ssh',
      host: 'a@alpha:2200',
      keyPath: '~/.ssh/k',
      townPath: '/t',
    });
    await reg.add({ name: 'alpha', type: 'ssh', host: 'b@beta' });
    assert.deepEqual(reg.get('alpha'), { name: 'alpha', type: 'ssh', host: 'b@beta' });
    const copy = reg.get('alpha');
    copy.host = 'mutated';
    assert.equal(reg.get('alpha').host, 'b@beta');
    assert.throws(() => reg.get('nope'), { code: 'ERR_MACHINE_NOT_FOUND', name: 'MachineNotFoundError' });
    assert.equal(reg.has('nope'), false);
  });

  test('remove; local cannot be removed; removing a missing machine fails', async () => {
    const reg = await MachineRegistry.open(freshPath());
    await reg.add({ name: 'box', type: 'ssh', host: 'box' });
    await reg.remove('box');
    assert.equal(reg.has('box'), false);
    await assert.rejects(reg.remove('local'), { code: 'ERR_LOCAL_MACHINE' });
    await assert.rejects(reg.remove('box'), { code: 'ERR_MACHINE_NOT_FOUND' });
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

describe('update and group commit', () => {
  test('update returns the callback result and applies its changes', async () => {
    const reg = await MachineRegistry.open(freshPath());
    const n = await reg.update((d) => {
      d.add({ name: 'one', type: 'ssh', host: 'one' });
      d.add({ name: 'two', type: 'ssh', host: 'two' });
      return d.list().length;
    });
    assert.equal(n, 3);
    assert.deepEqual(
      reg.list().map((m) => m.name),
      ['local', 'one', 'two'],
    );
  });

  test('100 concurrent adds are one batch: one rename, one fsync, all present', async () => {
    const path = freshPath();
    const reg = await MachineRegistry.open(path);
    let renames = 0;
    const realRename = ops.rename;
    ops.rename = (a, b) => {
      renames++;
      return realRename(a, b);
    };
    try {
      await Promise.all(
        Array.from({ length: 100 }, (_, i) => reg.add({ name: `m${i}`, type: 'ssh', host: `h${i}` })),
      );
    } finally {
      ops.rename = realRename;
    }
    assert.equal(renames, 1);
    assert.equal(reg.list().length, 101);
    const onDisk = await MachineRegistry.open(path);
    assert.equal(onDisk.list().length, 101);
  });

  test('in one batch, a failing call fails alone and its partial changes are undone', async () => {
    const reg = await MachineRegistry.open(freshPath());
    const results = await Promise.allSettled([
      reg.add({ name: 'good1', type: 'ssh', host: 'g1' }),
      reg.update((d) => {
        d.add({ name: 'partial', type: 'ssh', host: 'p' });
        d.remove('good1');
        throw new Error('changed my mind');
      }),
      reg.add({ name: 'bad name', type: 'ssh', host: 'x' }),
      reg.update((d) => d.add({ name: 'bad', type: 'ssh', host: '-oProxyCommand=evil' })),
      reg.add({ name: 'good2', type: 'ssh', host: 'g2' }),
    ]);
    assert.deepEqual(
      results.map((r) => r.status),
      ['fulfilled', 'rejected', 'rejected', 'rejected', 'fulfilled'],
    );
    assert.match(String((results[1] as PromiseRejectedResult).reason), /changed my mind/);
    assert.deepEqual(
      reg.list().map((m) => m.name),
      ['good1', 'good2', 'local'],
    );
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

describe('validation', () => {
  const invalid: [string, object, string][] = [
    ['empty name', { name: '', type: 'local' }, 'name'],
    ['name with a space', { name: 'a b', type: 'local' }, 'name'],
    ['name starting with a dot', { name: '.hidden', type: 'local' }, 'name'],
    ['name starting with a dash', { name: '-x', type: 'local' }, 'name'],
    ['name of 64 characters', { name: 'a'.repeat(64), type: 'local' }, 'name'],
    ['unknown type', { name: 'k', type: 'k8s' }, 'type'],
    ['ssh without host', { name: 's', type: 'ssh' }, 'host'],
    ['option injection', { name: 's', type: 'ssh', host: '-oProxyCommand=touch /tmp/pwned' }, 'host'],
    ['user option injection', { name: 's', type: 'ssh', host: '-l@host' }, 'host'],
    ['whitespace in host', { name: 's', type: 'ssh', host: 'a b' }, 'host'],
    ['newline in host', { name: 's', type: 'ssh', host: 'a\nb' }, 'host'],
    ['port out of range', { name: 's', type: 'ssh', host: 'a:70000' }, 'host'],
    ['control character in keyPath', { name: 's', type: 'ssh', host: 'a', keyPath: 'k\u0000' }, 'keyPath'],
    ['non-string townPath', { name: 's', type: 'ssh', host: 'a', townPath: 5 }, 'townPath'],
    ['local turned into ssh', { name: 'local', type: 'ssh', host: 'a' }, 'name'],
  ];
  for (const [what, machine, field] of invalid) {
    test(`${what} is rejected naming ${field}, and the file is untouched`, async () => {
      const path = freshPath();
      const reg = await MachineRegistry.open(path);
      await reg.add({ name: 'keep', type: 'ssh', host: 'keep' });
      const before = readFileSync(path);
      const err = await reg.add(machine as never).then(
        () => assert.fail('should be rejected'),
        (e: unknown) => e as { code: string; field?: string; message: string },
      );
      if (field === 'name' && what.startsWith('local')) assert.equal(err.code, 'ERR_LOCAL_MACHINE');
      else {
        assert.equal(err.code, 'ERR_INVALID_MACHINE');
        assert.equal(err.field, field);
        assert.match(err.message, new RegExp(field));
      }
      assert.deepEqual(readFileSync(path), before);
    });
  }

  test('accepted host forms', async () => {
    const reg = await MachineRegistry.open(freshPath());
    for (const host of [
      'h',
      'user@h',
      'user@h.example.com:22',
      'h:65535',
      '[::1]:2222',
      'u@10.0.0.1',
      'my_host',
    ]) {
      await reg.add({ name: 'ok', type: 'ssh', host });
      assert.equal(reg.get('ok').host, host);
    }
  });
});

describe('file format', () => {
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
});

describe('unusual fields', () => {
  test('a field named __proto__ is kept as an ordinary field and written back', async () => {
    const path = freshPath();
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(
      path,
      '{"version": 1, "machines": {"a": {"name": "a", "type": "local", "__proto__": {"polluted": true}}}}',
    );
    const reg = await MachineRegistry.open(path);
    await reg.add({ name: 'b', type: 'local' });
    assert.equal(({} as { polluted?: boolean }).polluted, undefined);
    assert.deepEqual(
      Object.getOwnPropertyDescriptor(JSON.parse(readFileSync(path, 'utf8')).machines.a, '__proto__')?.value,
      {
        polluted: true,
      },
    );
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
