import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { scratchDir } from '../../test/scratch-dir.js';
import { JsonParseError, parseJson, readJsonFile } from './index.js';
import { locateJsonError } from './read-json.js';

const dir = scratchDir('townlock-json-');

test('readJsonFile parses valid JSON', async () => {
  const file = join(dir, 'ok.json');
  writeFileSync(file, '{"a": [1, 2, {"b": null}], "c": "\\u00e9"}');
  assert.deepEqual(await readJsonFile(file), { a: [1, 2, { b: null }], c: 'é' });
});

test('parse errors name the file, line, column and position', async () => {
  const file = join(dir, 'bad.json');
  writeFileSync(file, '{\n  "a": 1,\n  "b": }\n');
  const err = await readJsonFile(file).then(
    () => assert.fail('should fail'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof JsonParseError);
  assert.equal(err.code, 'ERR_JSON_PARSE');
  assert.equal(err.path, file);
  assert.equal(err.line, 3);
  assert.equal(err.column, 8);
  assert.equal(err.position, 19);
  assert.match(err.message, new RegExp(`${file}.*line 3, column 8`));
});

test('the scanner locates every kind of error where JSON.parse fails', () => {
  const cases: [string, number][] = [
    ['', 0],
    ['{"a": 1', 7],
    ['{"a" 1}', 5],
    ['[1, 2,]', 6],
    ['{"a": tru}', 9],
    ['"abc', 4],
    ['{"a": 01}', 7],
    ['{} x', 3],
    ['{"a": "\\x"}', 8],
    ["{'a': 1}", 1],
  ];
  for (const [text, position] of cases) {
    assert.throws(() => JSON.parse(text));
    assert.equal(locateJsonError(text).position, position, text);
  }
});

test('readJsonFile refuses what is not a regular file (a FIFO would hang, /dev/zero never ends) and bad arguments', async () => {
  const fifo = join(dir, 'fifo');
  execFileSync('mkfifo', [fifo]);
  await assert.rejects(readJsonFile(fifo), { code: 'ERR_INVALID_OPTION', message: /regular file/ });
  await assert.rejects(readJsonFile('/dev/zero'), { code: 'ERR_INVALID_OPTION', message: /regular file/ });
  await assert.rejects(readJsonFile(5 as unknown as string), { code: 'ERR_INVALID_OPTION', message: /path/ });
  assert.throws(() => parseJson(7 as unknown as string, 'x'), {
    code: 'ERR_INVALID_OPTION',
    message: /text/,
  });
});
