/**
 * The behaviour every `Registry` shares (MachineRegistry on a file, EtcdMachineRegistry on etcd): one
 * suite, run per backend by registry.test.ts, through the Registry interface only. A backend gives fresh
 * stores, opens registry objects on them (each one as another process would), and can write and read
 * its raw form, for the tests of what a newer tool wrote (unknown fields, invalid entries).
 * Backend-specific behaviour (the file's format and corruption, etcd's watch, conflicts and failures)
 * is tested beside each backend.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Registry } from '../../src/registry/index.js';

/** One empty store of the backend under test. */
export interface RegistryStore {
  /** Opens another registry object on the store (as another process would). */
  open(): Promise<Registry>;
  /** Writes machine entries (raw JSON text by name) and unknown top-level fields (raw JSON text by key). */
  seed(machines: Record<string, string>, extra?: Record<string, string>): Promise<void>;
  /** The stored JSON text of machine `name`, or undefined when it is not stored. */
  rawMachine(name: string): Promise<string | undefined>;
  /** The stored JSON text of the unknown top-level field `key`. */
  rawExtra(key: string): Promise<string | undefined>;
  /** Everything stored, as text: equal before and after means nothing was written. */
  dump(): Promise<string>;
  /** How many durable writes `fn` made (file replacements; etcd revisions). */
  writes(fn: () => Promise<unknown>): Promise<number>;
}

/** A registry backend under test. */
export interface RegistryBackend {
  label: string;
  /** False (test skipped) when the backend cannot run here; throws under CI. */
  ready(t: { skip: (reason: string) => void }): boolean;
  /** A fresh, empty store. */
  fresh(): Promise<RegistryStore>;
}

const ssh = (name: string, host = `${name}.example`) => ({ name, type: 'ssh' as const, host });
const names = (reg: Registry) => reg.list().map((m) => m.name);

/** Registers the contract tests for one backend. */
export function registryContract(backend: RegistryBackend): void {
  const { label, ready } = backend;
  const it = (title: string, fn: (store: RegistryStore) => Promise<void>) =>
    test(`${label}: ${title}`, async (t) => {
      if (!ready(t)) return;
      await fn(await backend.fresh());
    });

  it('an empty store reads as just local', async (store) => {
    const reg = await store.open();
    assert.deepEqual(reg.list(), [{ name: 'local', type: 'local' }]);
    assert.equal(reg.has('local'), true);
    assert.deepEqual(reg.invalid(), []);
  });

  it('get, has and list (sorted) after add; add replaces; get returns copies; read-your-writes', async (store) => {
    const reg = await store.open();
    await reg.add(ssh('zeta', 'z@zeta'));
    assert.equal(reg.has('zeta'), true, 'an acknowledged add is read at once');
    await reg.add({ name: 'alpha', type: 'ssh', host: 'a@alpha:2200', keyPath: '~/.ssh/k', townPath: '/t' });
    assert.deepEqual(names(reg), ['alpha', 'local', 'zeta']);
    assert.deepEqual(reg.get('alpha'), {
      name: 'alpha',
      type: 'ssh',
      host: 'a@alpha:2200',
      keyPath: '~/.ssh/k',
      townPath: '/t',
    });
    await reg.add(ssh('alpha', 'b@beta'));
    assert.deepEqual(reg.get('alpha'), { name: 'alpha', type: 'ssh', host: 'b@beta' });
    const copy = reg.get('alpha');
    copy.host = 'mutated';
    assert.equal(reg.get('alpha').host, 'b@beta');
    assert.throws(() => reg.get('nope'), { code: 'ERR_MACHINE_NOT_FOUND', name: 'MachineNotFoundError' });
    assert.equal(reg.has('nope'), false);
  });

  it('remove; local cannot be removed or retyped; removing a missing machine fails', async (store) => {
    const reg = await store.open();
    await reg.add(ssh('box'));
    await reg.remove('box');
    assert.equal(reg.has('box'), false);
    await assert.rejects(reg.remove('local'), { code: 'ERR_LOCAL_MACHINE' });
    await assert.rejects(reg.add(ssh('local')), { code: 'ERR_LOCAL_MACHINE' });
    await assert.rejects(reg.remove('box'), { code: 'ERR_MACHINE_NOT_FOUND' });
    await reg.add({ name: 'local', type: 'local', townPath: '/srv/town' });
    assert.equal(reg.get('local').townPath, '/srv/town', 'local may be given a town path');
  });

  it('another object on the same store sees adds and removes after reload(), and writes on top of them', async (store) => {
    const a = await store.open();
    const b = await store.open();
    await a.add(ssh('from-a'));
    await b.reload();
    assert.equal(b.has('from-a'), true);
    await b.remove('from-a');
    await b.add(ssh('from-b'));
    await a.reload();
    assert.deepEqual(names(a), ['from-b', 'local']);
    const c = await store.open();
    assert.deepEqual(names(c), ['from-b', 'local'], 'a new object reads the store');
  });

  it('a remove right after another object added the machine finds it (no stale NOT_FOUND)', async (store) => {
    const a = await store.open();
    const b = await store.open();
    for (let i = 0; i < 5; i++) {
      await a.add(ssh(`quick${i}`));
      await b.remove(`quick${i}`);
    }
    await a.reload();
    assert.deepEqual(names(a), ['local']);
  });

  it('update returns the callback result, applies its changes, and needs a function', async (store) => {
    const reg = await store.open();
    const n = await reg.update((d) => {
      d.add(ssh('one'));
      d.add(ssh('two'));
      return d.list().length;
    });
    assert.equal(n, 3);
    assert.deepEqual(names(reg), ['local', 'one', 'two']);
    assert.equal(await reg.update((d) => d.get('one').host), 'one.example', 'a read-only update');
    await assert.rejects(reg.update('nope' as never), { code: 'ERR_INVALID_OPTION', message: /fn/ });
  });

  it('update sees writes another object committed before it began', async (store) => {
    const a = await store.open();
    const b = await store.open();
    await a.add(ssh('first'));
    assert.deepEqual(await b.update((d) => d.list().map((m) => m.name)), ['first', 'local']);
  });

  it('a change made inside a running update() is invisible until it commits', async (store) => {
    const reg = await store.open();
    let seenInside: boolean | undefined;
    await reg.update((draft) => {
      draft.add(ssh('ghost'));
      seenInside = reg.has('ghost');
    });
    assert.equal(seenInside, false);
    assert.equal(reg.has('ghost'), true);
  });

  it('100 concurrent adds are one batch: one durable write, all present, seen by another object', async (store) => {
    const reg = await store.open();
    const writes = await store.writes(() =>
      Promise.all(Array.from({ length: 100 }, (_, i) => reg.add(ssh(`m${i}`)))),
    );
    assert.equal(writes, 1);
    assert.equal(reg.list().length, 101);
    const other = await store.open();
    assert.equal(other.list().length, 101);
  });

  it('in one batch, a failing call fails alone and its partial changes are undone', async (store) => {
    const reg = await store.open();
    const results = await Promise.allSettled([
      reg.add(ssh('good1')),
      reg.update((d) => {
        d.add(ssh('partial'));
        d.remove('good1');
        throw new Error('changed my mind');
      }),
      reg.add(ssh('bad name')),
      reg.update((d) => d.add(ssh('bad', '-oProxyCommand=evil'))),
      reg.remove('missing'),
      reg.add(ssh('good2')),
    ]);
    assert.deepEqual(
      results.map((r) => r.status),
      ['fulfilled', 'rejected', 'rejected', 'rejected', 'rejected', 'fulfilled'],
    );
    assert.match(String((results[1] as PromiseRejectedResult).reason), /changed my mind/);
    assert.equal((results[4] as PromiseRejectedResult).reason.code, 'ERR_MACHINE_NOT_FOUND');
    assert.deepEqual(names(reg), ['good1', 'good2', 'local']);
    await reg.reload();
    assert.deepEqual(names(reg), ['good1', 'good2', 'local'], 'and so is the store');
  });

  it('a write inside an update() callback of the same registry fails with ERR_REGISTRY_REENTRANT, also through another object', async (store) => {
    const reg = await store.open();
    const other = await store.open();
    await assert.rejects(
      reg.update(async () => {
        await reg.add(ssh('nested'));
      }),
      { code: 'ERR_REGISTRY_REENTRANT' },
    );
    await assert.rejects(
      reg.update(() => other.add(ssh('via-other'))),
      { code: 'ERR_REGISTRY_REENTRANT' },
    );
    await reg.add(ssh('after'));
    assert.deepEqual(names(reg), ['after', 'local']);
  });

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
  ];
  it('invalid machines are rejected naming the field, and the store is untouched', async (store) => {
    const reg = await store.open();
    await reg.add(ssh('keep'));
    const before = await store.dump();
    for (const [what, machine, field] of invalid) {
      const err = await reg.add(machine as never).then(
        () => assert.fail(`${what}: should be rejected`),
        (e: unknown) => e as { code: string; field?: string; message: string },
      );
      assert.equal(err.code, 'ERR_INVALID_MACHINE', what);
      assert.equal(err.field, field, what);
      assert.match(err.message, new RegExp(field), what);
    }
    assert.equal(await store.dump(), before);
  });

  it('accepted host forms', async (store) => {
    const reg = await store.open();
    for (const host of [
      'h',
      'user@h',
      'user@h.example.com:22',
      'h:65535',
      '[::1]:2222',
      'u@10.0.0.1',
      'my_host',
    ]) {
      await reg.add(ssh('ok', host));
      assert.equal(reg.get('ok').host, host);
    }
  });

  it('unknown fields (per machine and top-level) are kept byte for byte, also integers beyond 2^53 and __proto__', async (store) => {
    await store.seed(
      {
        box: '{"name":"box","type":"ssh","host":"b","id":9007199254740993,"labels":{"pool":["ci"]}}',
        odd: '{"name":"odd","type":"local","__proto__":{"polluted":true}}',
      },
      { seq: '12345678901234567890', updated_by: '"gt 2.1"' },
    );
    const reg = await store.open();
    assert.deepEqual(reg.get('box'), { name: 'box', type: 'ssh', host: 'b' });
    await reg.add(ssh('other'));
    // Replacing a machine keeps the fields a newer tool added to it.
    await reg.add({ name: 'box', type: 'ssh', host: 'b2', townPath: '/t' });
    await reg.add({ name: 'odd', type: 'local', townPath: '/o' });
    const box = (await store.rawMachine('box'))!;
    assert.match(box, /"id": 9007199254740993\b/);
    assert.match(box, /"labels": \{"pool":\["ci"\]\}/);
    assert.deepEqual(JSON.parse(box).host, 'b2');
    const odd = JSON.parse((await store.rawMachine('odd'))!);
    assert.deepEqual(Object.getOwnPropertyDescriptor(odd, '__proto__')?.value, { polluted: true });
    assert.equal(({} as { polluted?: boolean }).polluted, undefined);
    assert.equal(await store.rawExtra('seq'), '12345678901234567890');
    assert.equal(await store.rawExtra('updated_by'), '"gt 2.1"');
  });

  it('invalid entries are not served, are reported, are kept byte for byte on rewrite, and can be removed', async (store) => {
    const entries: Record<string, string> = {
      good: '{"name":"good","type":"ssh","host":"good.example"}',
      '': '{"name":"","type":"ssh","host":"x"}',
      '../../etc': '{"name":"../../etc","type":"ssh","host":"x"}',
      proxy: '{"name":"proxy","type":"ssh","host":"-oProxyCommand=touch /tmp/pwned"}',
      local: '{"name":"local","type":"ssh","host":"evil"}',
      esc: '{"name":"esc","type":"ssh","host":"h","town_path":"\\u001b[2J"}',
      scalar: '3',
      numhost: '{"name":"numhost","type":"ssh","host":1}',
      renamed: '{"name":"other","type":"local"}',
      future: '{"name":"future","type":"k8s","kube":{"ctx":"a"}}',
    };
    await store.seed(entries);
    const reg = await store.open();
    assert.deepEqual(
      names(reg),
      ['good'],
      'only valid machines are listed (local is invalid here: typed ssh)',
    );
    assert.throws(() => reg.get('proxy'), { code: 'ERR_INVALID_MACHINE', message: /proxy.*host/ });
    assert.equal(reg.has('proxy'), false);
    assert.deepEqual(
      reg
        .invalid()
        .map((p) => p.machine)
        .sort(),
      ['', '../../etc', 'esc', 'future', 'local', 'numhost', 'proxy', 'renamed', 'scalar'],
    );
    await reg.add(ssh('new'));
    for (const name of ['proxy', 'future', 'scalar'])
      assert.equal(await store.rawMachine(name), entries[name]);
    await reg.remove('proxy');
    assert.equal(await store.rawMachine('proxy'), undefined);
    assert.equal(reg.invalid().length, 8);
    await assert.rejects(reg.remove('local'), { code: 'ERR_LOCAL_MACHINE' });
  });
}
