/** sanitize and jsonText: no control or bidi-override character survives, everything else does. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { jsonText, sanitize } from './sanitize.js';

const HOSTILE = 'a\u001b[2J\u001b]0;title\u0007b\nc\rd\u007fe\u009b1mf\u202eg\u2066h\u0000';

test('sanitize shows C0 (newline too), DEL, C1 and bidi overrides as escapes', () => {
  assert.equal(
    sanitize(HOSTILE),
    'a\\x1b[2J\\x1b]0;title\\x07b\\x0ac\\x0dd\\x7fe\\x9b1mf\\u202eg\\u2066h\\x00',
  );
  for (const safe of [
    'plain text',
    'café',
    'naïve – “quoted”',
    '日本語',
    'data\ufffd',
    '😀',
    '\\x1b stays',
  ]) {
    assert.equal(sanitize(safe), safe);
  }
});

test('line and paragraph separators and the bidi marks (ALM, LRM, RLM) are escaped too', () => {
  assert.equal(sanitize('a\u2028b\u2029c\u061cd\u200ee\u200ff'), 'a\\u2028b\\u2029c\\u061cd\\u200ee\\u200ff');
  assert.doesNotMatch(jsonText({ s: '\u061c\u200e\u200f' }), /[\u061c\u200e\u200f]/);
});

test('jsonText is JSON for the same value, with C1, DEL, U+2028/2029 and bidi escaped too', () => {
  const value = { name: HOSTILE, list: ['\u2028', '\u2029', '\u0085'], n: 1 };
  const text = jsonText(value);
  assert.deepEqual(JSON.parse(text), value);
  assert.doesNotMatch(
    text,
    // biome-ignore lint/suspicious/noControlCharactersInRegex: looking for control characters
    /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/,
  );
  assert.ok(text.includes('\\u009b') && text.includes('\\u202e') && text.includes('\\u2028'), text);
});
