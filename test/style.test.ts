/**
 * Grep-level rules for src/ (as proper-lockfile's misc tests do): things that must never creep in.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { test } from 'node:test';

const root = join(import.meta.dirname ?? new URL('..', import.meta.url).pathname, '..');
/** Every non-test .ts file under src/. */
function sources(dir = join(root, 'src')): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return sources(p);
    return e.name.endsWith('.ts') && !e.name.endsWith('.test.ts') ? [p] : [];
  });
}
const files = sources().map((p) => ({ path: relative(root, p), text: readFileSync(p, 'utf8') }));

test('only cli/main.ts touches process.argv, process.exit and process.std*', () => {
  for (const { path, text } of files) {
    if (path === join('src', 'cli', 'main.ts')) continue;
    assert.ok(
      !/process\.(exit\b|exitCode|stdout|stderr|stdin)/.test(text),
      `${path} touches process I/O or exit`,
    );
    // The one other reader of argv: the holder info line records the holder's command line.
    if (path !== join('src', 'filelock', '_lock-file.ts'))
      assert.ok(!/process\.argv/.test(text), `${path} reads argv`);
  }
});

test('no blocking flock: every lock attempt is LOCK_NB', () => {
  const flock = files.find((f) => f.path.endsWith('backend-flock.ts'))!.text;
  assert.match(flock, /\| LOCK_NB\)/);
  assert.doesNotMatch(flock, /\.async\(/, 'no koffi async calls (they would park a worker in flock)');
});

test('no shell in local exec, no console output, no synchronous sleeps in the library', () => {
  for (const { path, text } of files) {
    assert.ok(!/shell:\s*true/.test(text), `${path} uses a shell`);
    assert.ok(!/\bexecSync\(|\bspawnSync\(|Atomics\.wait/.test(text), `${path} blocks on a child or a sleep`);
    assert.ok(!/console\.(log|error|warn)/.test(text), `${path} writes to the console`);
  }
});

test('every public module file opens with a comment saying what it guarantees or does', () => {
  for (const { path, text } of files) assert.ok(text.startsWith('/**'), `${path} has no opening comment`);
});

test('library modules never import the CLI', () => {
  for (const { path, text } of files) {
    if (path.startsWith(join('src', 'cli'))) continue;
    assert.ok(!text.includes("from '../cli/"), `${path} imports the CLI`);
  }
});

test('the CLI prints only through output.ts (sanitized), except the raw output of machine exec', () => {
  for (const { path, text } of files) {
    if (!path.startsWith(join('src', 'cli')) || path.endsWith('main.ts') || path.endsWith('output.ts'))
      continue;
    // writeBytes writes raw bytes: only the command output machine exec streams (pass() there) may use it.
    const writes = text.split('\n').filter((line) => /\.write(Bytes)?\(/.test(line));
    const allowed = path.endsWith('machine-remote.ts')
      ? writes.filter((l) => !/^\s+out\.writeBytes\(chunk\)\?\.catch\(/.test(l))
      : writes;
    assert.deepEqual(allowed, [], `${path} writes around output.ts`);
  }
});
