/**
 * etcd3 and grpc-js load only when Etcd.connect() runs: `import 'townlock'`, `import 'townlock/etcd'` and
 * CLI commands that do not name etcd stay at Node's start-up floor. A control run shows the check sees
 * them once connect() has run.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { DIST, tempDir } from '../multiprocess/helpers.js';

const report = join(import.meta.dirname, 'fixtures', 'report-etcd-loaded.cjs');
const bin = join(DIST, '..', 'bin', 'townlock.js');

/**
 * Runs node with the report preloaded; returns how many etcd3/@grpc modules (or, with `what` 'ssh2',
 * ssh2 modules) the process loaded.
 */
function loadedBy(args: string[], env: NodeJS.ProcessEnv = {}, what: 'etcd' | 'ssh2' = 'etcd'): number {
  const r = spawnSync(process.execPath, ['-r', report, ...args], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
    timeout: 20_000,
  });
  const line = r.stderr.split('\n').find((l) => l.startsWith(`${what}-modules-loaded `));
  assert.ok(line, `no report; status ${r.status}, stderr: ${r.stderr}`);
  return Number(line.split(' ')[1]);
}

/** An ESM script body for `node --input-type=module -e`. */
const esm = (body: string) => ['--input-type=module', '-e', body];

test('importing townlock and townlock/etcd loads neither etcd3 nor grpc-js', () => {
  assert.equal(loadedBy(esm(`await import(${JSON.stringify(`${DIST}/index.js`)});`)), 0);
  const etcd = JSON.stringify(`${DIST}/etcd/index.js`);
  assert.equal(loadedBy(esm(`const { Etcd } = await import(${etcd}); Etcd.name;`)), 0);
});

test('importing townlock/etcd or townlock/registry loads no ssh2; control: opening an SSH connection does', () => {
  const etcd = JSON.stringify(`${DIST}/etcd/index.js`);
  assert.equal(loadedBy(esm(`const { Etcd } = await import(${etcd}); Etcd.name;`), {}, 'ssh2'), 0);
  const registry = JSON.stringify(`${DIST}/registry/index.js`);
  assert.equal(loadedBy(esm(`await import(${registry});`), {}, 'ssh2'), 0);
  const connection = JSON.stringify(`${DIST}/connection/index.js`);
  const body = `const { SshConnection } = await import(${connection});
    const c = new SshConnection({ host: '127.0.0.1:1', connectTimeout: 500 });
    await c.exec('true').catch(() => {});
    await c.close();`;
  assert.ok(loadedBy(esm(body), { HOME: '/nonexistent' }, 'ssh2') > 0);
});

test('control: once Etcd.connect() has run, the check sees etcd3 and grpc-js', () => {
  const etcd = JSON.stringify(`${DIST}/etcd/index.js`);
  const body = `const { Etcd } = await import(${etcd});
    await Etcd.connect({ endpoints: ['127.0.0.1:1'], callTimeout: 100 }).catch(() => {});`;
  assert.ok(loadedBy(esm(body)) > 0);
});

test('CLI commands that do not name etcd load neither', () => {
  const tmp = tempDir();
  try {
    assert.equal(loadedBy([bin, '--help']), 0);
    assert.equal(
      loadedBy([bin, 'machine', 'list'], { TOWNLOCK_REGISTRY: join(tmp.dir, 'machines.json') }),
      0,
    );
    assert.equal(loadedBy([bin, 'lock', 'run', join(tmp.dir, 'state.json'), 'true']), 0);
    assert.equal(loadedBy([bin, 'json', 'set', join(tmp.dir, 'state.json'), 'a', '1']), 0);
    // Control: the same lock run on etcd loads the client.
    assert.ok(loadedBy([bin, 'lock', 'run', '--etcd', '127.0.0.1:1', 'job', 'true']) > 0);
  } finally {
    tmp.remove();
  }
});
