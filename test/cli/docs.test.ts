/**
 * docs/cli.md matches the code: every command's usage lines, options and aliases, and the exit code
 * table, are the ones the CLI's command table (src/cli/spec.ts) and help print.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { EXIT } from '../../src/cli/errors.js';
import { mainHelp } from '../../src/cli/help.js';
import { COMMANDS, optionsOf } from '../../src/cli/spec.js';

const docs = readFileSync(join(import.meta.dirname, '..', '..', 'docs', 'cli.md'), 'utf8');

/** The text of the `## group name` section of docs/cli.md. */
function section(title: string): string {
  const start = docs.indexOf(`\n## ${title}\n`);
  assert.ok(start >= 0, `docs/cli.md has a section "## ${title}"`);
  const end = docs.indexOf('\n## ', start + 1);
  return docs.slice(start, end < 0 ? undefined : end);
}

test('docs/cli.md shows every usage line and option of every command', () => {
  for (const spec of COMMANDS) {
    const text = section(spec.path.join(' '));
    for (const line of spec.usage) assert.ok(text.includes(`\n${line}\n`), `usage line: ${line}`);
    for (const o of optionsOf(spec)) {
      if (o.long === 'help' || o.long === 'registry') continue; // described once, in Conventions
      for (const name of [`--${o.long}`, ...(o.aliases ?? []).map((a) => `--${a}`)])
        assert.ok(text.includes(`\`${name}`), `${spec.path.join(' ')}: ${name}`);
      if (o.short) assert.ok(text.includes(`\`-${o.short}\``), `${spec.path.join(' ')}: -${o.short}`);
    }
    for (const alias of spec.aliases ?? [])
      assert.ok(docs.includes(`\`${spec.path[0]} ${alias}\``), `alias ${spec.path[0]} ${alias}`);
  }
});

test('the exit code table in docs/cli.md and in townlock --help has every code', () => {
  const help = mainHelp(COMMANDS);
  for (const code of Object.values(EXIT)) {
    assert.ok(docs.includes(`| \`${code}\` |`), `docs/cli.md: exit ${code}`);
    assert.match(help, new RegExp(`\\n  ${code} +\\S`), `--help: exit ${code}`);
  }
});
