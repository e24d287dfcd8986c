/**
 * Start-up cost: what a program or a CLI command loads. ssh2 (about 100 ms) is loaded only when an SSH
 * connection is opened, koffi only when a lock is taken, node:child_process only to start a command;
 * the CLI (bundled into dist/cli.cjs) loads none of them for --version or --help, and its unbundled
 * modules in dist/cli/ import each command's module only when that command runs.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { after, describe, test } from 'node:test';
import { DIST, tempDir } from './multiprocess/helpers.js';

const tmp = tempDir('townlock-lazy-');
after(tmp.remove);
const ROOT = resolve(DIST, '..');

// Module hooks that log every URL an `import` resolves to, and a preload that installs them and, at exit,
// adds every CommonJS module loaded through require() (ssh2 and the bundled CLI are CommonJS) and every
// builtin loaded by then (as builtin:NAME, from process.moduleLoadList).
const HOOKS = join(tmp.dir, 'hooks.mjs');
writeFileSync(
  HOOKS,
  `import { appendFileSync } from 'node:fs';
let log;
export function initialize(data) { log = data.log; }
export async function resolve(specifier, context, next) {
  const result = await next(specifier, context);
  appendFileSync(log, result.url + '\\n');
  return result;
}
`,
);
const PRELOAD = join(tmp.dir, 'preload.mjs');
writeFileSync(
  PRELOAD,
  `import { appendFileSync } from 'node:fs';
import { createRequire, register } from 'node:module';
const log = process.env.TRACE_LOG;
register(${JSON.stringify(`file://${HOOKS}`)}, import.meta.url, { data: { log } });
const require = createRequire(import.meta.url);
process.on('exit', () => {
  const builtins = process.moduleLoadList.filter((m) => m.startsWith('NativeModule ')).map((m) => 'builtin:' + m.slice(13));
  appendFileSync(log, [...Object.keys(require.cache), ...builtins].join('\\n') + '\\n');
});
`,
);

let seq = 0;
/** Runs `node --import preload ...args` in the package root and returns every module it loaded. */
function modulesLoadedBy(args: string[]): string[] {
  const log = join(tmp.dir, `trace${++seq}.log`);
  writeFileSync(log, '');
  const r = spawnSync(process.execPath, ['--import', PRELOAD, ...args], {
    cwd: ROOT,
    env: { ...process.env, TRACE_LOG: log, TOWNLOCK_REGISTRY: join(tmp.dir, 'machines.json') },
    encoding: 'utf8',
    timeout: 30_000,
  });
  assert.equal(r.status, 0, r.stderr);
  return readFileSync(log, 'utf8').split('\n').filter(Boolean);
}

/** The loaded modules that belong to package `name`. */
const fromPackage = (loaded: string[], name: string) =>
  loaded.filter((m) => m.includes(`/node_modules/${name}/`));

test("import 'townlock' and 'townlock/registry' load neither ssh2 nor koffi", () => {
  for (const entry of ['townlock', 'townlock/registry', 'townlock/connection']) {
    const loaded = modulesLoadedBy(['--input-type=module', '-e', `await import(${JSON.stringify(entry)})`]);
    assert.ok(
      loaded.some((m) => m.includes('/dist/index.js') || m.includes('/dist/')),
      `${entry}: traced`,
    );
    assert.deepEqual(fromPackage(loaded, 'ssh2'), [], `${entry} loads ssh2`);
    assert.deepEqual(fromPackage(loaded, 'koffi'), [], `${entry} loads koffi`);
  }
});

test('ssh2 is loaded once a connection is opened', () => {
  // The connection fails at once (nothing listens on port 1), after ssh2 was loaded to open it.
  const script = `import { SshConnection } from 'townlock';
const c = new SshConnection({ host: 'nobody@127.0.0.1:1', knownHostsPath: '/dev/null', sshConfigPath: false });
await c.exec('true').catch(() => {});
await c.close();`;
  const loaded = modulesLoadedBy(['--input-type=module', '-e', script]);
  assert.notDeepEqual(fromPackage(loaded, 'ssh2'), []);
});

const BIN = join(ROOT, 'bin', 'townlock.js');
/** Runs the unbundled CLI (dist/cli/main.js, module by module) with the arguments that follow. */
const UNBUNDLED = [
  '--input-type=module',
  '-e',
  `const { runMain } = await import(${JSON.stringify(join(DIST, 'cli', 'main.js'))}); await runMain(process.argv.slice(1));`,
  '--', // what follows is the CLI's, not node's (--version, --help)
];
/** The command modules (not their light help tables, nor helpers named _x.js) a run of the CLI loaded. */
const commandModules = (loaded: string[]) =>
  loaded
    .filter(
      (m) => m.includes('/dist/cli/commands/') && !m.endsWith('-specs.js') && !m.includes('/commands/_'),
    )
    .map((m) => m.slice(m.lastIndexOf('/') + 1));
const HELP_ARGS = [['--version'], ['--help'], ['machine', '--help'], ['lock', 'run', '--help']];

test('townlock --version and --help load no ssh2, koffi or child_process', () => {
  for (const args of HELP_ARGS) {
    const loaded = modulesLoadedBy([BIN, ...args]);
    assert.ok(
      loaded.some((m) => m.endsWith('/bin/townlock.js')),
      `${args.join(' ')}: traced`,
    );
    assert.deepEqual(fromPackage(loaded, 'ssh2'), [], args.join(' '));
    assert.deepEqual(fromPackage(loaded, 'koffi'), [], args.join(' '));
    assert.ok(!loaded.includes('builtin:child_process'), args.join(' '));
  }
});

test('machine list (output to a pipe) loads no koffi, ssh2, child_process, crypto or tty; lock run no ssh2', () => {
  const list = modulesLoadedBy([BIN, 'machine', 'list']);
  assert.ok(list.includes('builtin:fs'), 'traced');
  assert.deepEqual(fromPackage(list, 'ssh2'), []);
  assert.deepEqual(fromPackage(list, 'koffi'), []);
  for (const builtin of ['child_process', 'crypto', 'tty', 'fs/promises']) {
    assert.ok(!list.includes(`builtin:${builtin}`), builtin);
  }
  const run = modulesLoadedBy([BIN, 'lock', 'run', '-n', join(tmp.dir, 'state'), 'true']);
  assert.deepEqual(fromPackage(run, 'ssh2'), []);
  assert.notDeepEqual(fromPackage(run, 'koffi'), [], 'traced: the lock needs koffi');
});

test("the lock backend loads in event-loop turns of its own: never in the same block as its caller's work", () => {
  // An immediate queued just before the first lock runs before koffi is loaded, and another runs after
  // koffi is loaded and before the lock goes on: the load (~10 ms, ~6 ms of it in one stretch) adds to
  // neither the work before the lock nor the work after it.
  const script = `import { createRequire } from 'node:module';
import { loadBackend } from ${JSON.stringify(join(DIST, 'filelock', 'backend.js'))};
const require = createRequire(import.meta.url);
const koffiLoaded = () => Object.keys(require.cache).some((k) => k.includes('koffi'));
let turn = 0, firstSeen, resolvedAt;
const watch = () => {
  turn++;
  if (firstSeen === undefined && koffiLoaded()) firstSeen = turn;
  if (resolvedAt === undefined) setImmediate(watch);
};
setImmediate(watch);
const backend = await loadBackend();
resolvedAt = turn;
console.log(JSON.stringify({ firstSeen, resolvedAt, name: backend.name, same: backend === (await loadBackend()) }));`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    encoding: 'utf8',
    timeout: 30_000,
  });
  assert.equal(r.status, 0, r.stderr);
  const seen = JSON.parse(r.stdout) as {
    firstSeen?: number;
    resolvedAt: number;
    name: string;
    same: boolean;
  };
  // firstSeen: the first immediate that saw koffi loaded (undefined: none before the lock went on).
  assert.ok(seen.firstSeen !== undefined, `the lock went on in the turn that loaded koffi: ${r.stdout}`);
  assert.ok(seen.firstSeen > 1, `koffi was loaded in the caller's turn: ${r.stdout}`);
  assert.ok(seen.firstSeen <= seen.resolvedAt, r.stdout);
  assert.equal(seen.name, process.platform === 'win32' ? 'LockFileEx' : 'flock');
  assert.ok(seen.same);
});

test('the first lock of a process resolves under fake timers, and an abort during its load is honoured', () => {
  // Fake timers (node:test's mock.timers, sinon, jest, vitest) replace the global setImmediate: the turns
  // the load waits for must not depend on it. An abort that comes while the backend loads rejects the
  // lock instead of taking it. Each in a fresh process: only a process's first lock loads the backend.
  const script = `import { mock } from 'node:test';
const index = ${JSON.stringify(join(DIST, 'filelock', 'index.js'))};
const [path, mode] = process.argv.slice(1);
if (mode === 'fake' || mode === 'fake-then-import') {
  // 'fake': townlock imported before the fake timers are on; 'fake-then-import': after (a test that
  // imports what it tests lazily).
  const early = mode === 'fake' ? await import(index) : undefined;
  mock.timers.enable({ apis: ['setImmediate', 'setTimeout', 'setInterval', 'Date'] });
  const { FileLock } = early ?? (await import(index));
  const lock = new FileLock(path);
  await lock.lock();
  const held = lock.isLocked;
  await lock.unlock();
  mock.timers.reset();
  console.log(JSON.stringify({ held }));
} else {
  const { FileLock } = await import(index);
  const ac = new AbortController();
  const first = new FileLock(path, { signal: ac.signal }).lock();
  setImmediate(() => ac.abort(new Error('stop')));
  const outcome = await first.then(() => 'locked', (err) => err.code);
  const free = await new FileLock(path).tryLock();
  console.log(JSON.stringify({ outcome, free }));
}`;
  const run = (mode: string) => {
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script, join(tmp.dir, mode), mode], {
      encoding: 'utf8',
      timeout: 30_000,
    });
    assert.equal(r.status, 0, `${mode}: ${r.stderr}`);
    return JSON.parse(r.stdout) as unknown;
  };
  assert.deepEqual(run('fake'), { held: true });
  assert.deepEqual(run('fake-then-import'), { held: true });
  assert.deepEqual(run('abort'), { outcome: 'ERR_LOCK_ABORTED', free: true });
});

test('unbundled, --help and --version load no command module; each command loads its own only', () => {
  for (const args of HELP_ARGS) {
    const loaded = modulesLoadedBy([...UNBUNDLED, ...args]);
    assert.ok(
      loaded.some((m) => m.endsWith('/dist/cli/cli.js')),
      `${args.join(' ')}: traced`,
    );
    assert.deepEqual(commandModules(loaded), [], args.join(' '));
    assert.ok(
      !loaded.some((m) => m.includes('/dist/registry/') || m.includes('/dist/filelock/')),
      args.join(' '),
    );
  }
  assert.deepEqual(commandModules(modulesLoadedBy([...UNBUNDLED, 'machine', 'list'])), ['machine.js']);
  const run = modulesLoadedBy([...UNBUNDLED, 'lock', 'run', '-n', join(tmp.dir, 'state'), 'true']);
  assert.deepEqual(commandModules(run), ['lock-run.js']);
});

test("node:child_process, node:crypto and node:fs/promises are not loaded by import 'townlock'", () => {
  const loaded = modulesLoadedBy(['--input-type=module', '-e', "await import('townlock')"]);
  assert.ok(loaded.includes('builtin:fs'), 'traced');
  for (const builtin of ['child_process', 'crypto', 'fs/promises']) {
    assert.ok(!loaded.includes(`builtin:${builtin}`), builtin);
  }
});

describe('the CLI bundle\u2019s code cache (bin/_bundle.cjs)', () => {
  const loader = createRequire(import.meta.url)(join(ROOT, 'bin', '_bundle.cjs')) as {
    BUNDLE: string;
    cachedDataFor(bundle: Buffer): Buffer | undefined;
    compile(useCache?: boolean): import('node:vm').Script;
    load(script: import('node:vm').Script): { runMain: unknown };
  };

  test('the build wrote a cache this Node accepts for this bundle, and for no other bytes', () => {
    const script = loader.compile();
    assert.equal(script.cachedDataRejected, false);
    assert.equal(typeof loader.load(script).runMain, 'function');
    const bundle = readFileSync(loader.BUNDLE);
    assert.ok(loader.cachedDataFor(bundle));
    const edited = Buffer.from(bundle);
    edited.writeUInt8(edited.readUInt8(edited.length - 2) ^ 1, edited.length - 2); // same length, one bit changed
    assert.equal(loader.cachedDataFor(edited), undefined);
  });

  /** A copy of bin/ and the bundle in a directory of its own (--version needs nothing else). */
  const copyPackage = (name: string) => {
    const pkg = join(tmp.dir, name);
    cpSync(join(ROOT, 'bin'), join(pkg, 'bin'), { recursive: true });
    mkdirSync(join(pkg, 'dist'));
    copyFileSync(join(ROOT, 'dist', 'cli.cjs'), join(pkg, 'dist', 'cli.cjs'));
    return pkg;
  };
  const version = (pkg: string) => {
    const r = spawnSync(process.execPath, [join(pkg, 'bin', 'townlock.js'), '--version'], {
      encoding: 'utf8',
      timeout: 20_000,
    });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout;
  };

  test('a bundle edited after its cache was made runs as edited (the cache is not used)', () => {
    const pkg = copyPackage('edited');
    execFileSync(process.execPath, [
      '-e',
      `require(${JSON.stringify(join(pkg, 'bin', '_bundle.cjs'))}).writeCache()`,
    ]);
    assert.match(version(pkg), /^townlock \d+\.\d+\.\d+\n$/);
    const bundle = join(pkg, 'dist', 'cli.cjs');
    const text = readFileSync(bundle, 'utf8');
    // Every digit of the version a 9: VERSION = "0.1.0" becomes "9.9.9".
    const patched = text.replace(/VERSION = "[\d.]+"/, (m) => m.replace(/\d/g, '9'));
    assert.notEqual(patched, text);
    assert.equal(patched.length, text.length, 'the same length: V8 alone would take the stale cache');
    writeFileSync(bundle, patched);
    assert.match(version(pkg), /^townlock 9+\.9+\.9+\n$/);
  });

  test('a missing, garbage or FIFO cache file: the bundle compiles as usual', () => {
    const pkg = copyPackage('odd-caches');
    const cache = join(pkg, 'dist', 'cli.cjs.cache');
    assert.match(version(pkg), /^townlock /, 'no cache');
    writeFileSync(cache, 'townlock-v8-cache 1\n{"bundle": 1}\nnot a V8 code cache');
    assert.match(version(pkg), /^townlock /, 'garbage');
    rmSync(cache);
    execFileSync('mkfifo', [cache]);
    assert.match(version(pkg), /^townlock /, 'a FIFO (nobody writes to it: reading it would hang)');
  });

  test('requiring bin/townlock.js (as a wrapper might) still runs the command', () => {
    const r = spawnSync(
      process.execPath,
      ['-e', `process.argv.splice(1, Infinity, 'townlock', '--version'); require(${JSON.stringify(BIN)})`],
      { encoding: 'utf8' },
    );
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^townlock \d+\.\d+\.\d+\n$/);
  });
});
