/**
 * The README's two quick starts, run as a new user would: the shell one with the built `townlock`, the
 * library one from a project that depends on townlock, both with a HOME that has no ~/.ssh and nothing
 * prepared. Only the demo directory (/tmp/townlock-demo) is moved into a scratch directory.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { DIST } from './multiprocess/helpers.js';
import { scratchDir } from './scratch-dir.js';

const ROOT = resolve(DIST, '..');
const README = readFileSync(join(ROOT, 'README.md'), 'utf8');
const root = scratchDir('townlock-readme-');

/** The first fenced block of `lang` after the heading `heading`. */
function block(heading: string, lang: string): string {
  const at = README.indexOf(`\n${heading}\n`);
  assert.ok(at >= 0, `README has "${heading}"`);
  const match = new RegExp(`\`\`\`${lang}\\n([\\s\\S]*?)\`\`\``).exec(README.slice(at));
  assert.ok(match, `a ${lang} block under "${heading}"`);
  return match[1]!;
}

/** A fresh user: an empty HOME, no registry or etcd settings inherited from this environment. */
function userEnv(home: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, HOME: home };
  for (const name of ['TOWNLOCK_REGISTRY', 'TOWNLOCK_ETCD', 'SSH_AUTH_SOCK', 'NO_COLOR']) delete env[name];
  return env;
}

test('the CLI quick start runs as written, each command exiting 0', () => {
  const dir = join(root, 'cli');
  mkdirSync(join(dir, 'home'), { recursive: true });
  const demo = join(dir, 'townlock-demo');
  const script = block('## Quick start: the CLI', 'sh')
    .replaceAll('/tmp/townlock-demo', demo)
    .replaceAll('npx townlock', `"${process.execPath}" "${join(ROOT, 'bin', 'townlock.js')}"`);
  const r = spawnSync('sh', ['-e', '-c', script], { env: userEnv(join(dir, 'home')), encoding: 'utf8' });
  assert.equal(r.status, 0, `stdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
  assert.match(
    r.stdout,
    /^build-01 +ssh +deploy@build-01\.example\.com:2222/m,
    'machine list shows the machine',
  );
  assert.match(r.stdout, /only one of me runs at a time/);
  assert.deepEqual(JSON.parse(readFileSync(join(demo, 'state.json'), 'utf8')), {
    jobs: { build: { status: 'done' } },
  });
  assert.deepEqual(
    readFileSync(join(demo, 'events.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l)),
    [{ type: 'deploy', host: 'build-01' }],
  );
});

test('the library quick start runs as written from a project that depends on townlock', () => {
  const project = join(root, 'lib');
  mkdirSync(join(project, 'node_modules'), { recursive: true });
  mkdirSync(join(project, 'home'));
  symlinkSync(ROOT, join(project, 'node_modules', 'townlock'), 'dir');
  const demo = join(project, 'townlock-demo');
  writeFileSync(
    join(project, 'demo.mjs'),
    block('## Quick start: the library', 'js').replaceAll('/tmp/townlock-demo', demo),
  );
  for (const run of [1, 2]) {
    const r = spawnSync(process.execPath, ['demo.mjs'], {
      cwd: project,
      env: userEnv(join(project, 'home')),
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.deepEqual(JSON.parse(lines[0]!), { runs: run }, 'the state file counts the runs');
    assert.match(r.stdout, /\[ 'build-02', 'local' \]/);
    assert.match(r.stdout, new RegExp(`^${process.platform === 'linux' ? 'Linux' : '\\w+'}$`, 'm'));
  }
});
