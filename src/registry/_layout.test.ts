/**
 * A re-read that parses only the members that changed must give exactly what parsing the whole file
 * gives, for any change anyone could make to the file: these tests make random edits (the kind the Go
 * tool, a hand edit or a broken writer makes) and compare the two, edit after edit, including edits that
 * must make it fall back (duplicate keys, index-like keys, changes outside `machines`, corruption).
 * REGISTRY_EDITS sets the number of random edits (default 1500).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type Entry, parseRegistry, type RegistryState, serializeRegistry } from './_format.js';
import { layoutOf, setParsed } from './_layout.js';

/** A small seeded PRNG (mulberry32), so a failure can be replayed from its seed. */
function rng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (n: number) => Math.floor(next() * n),
    pick: <T>(xs: readonly T[]) => xs[Math.floor(next() * xs.length)]!,
  };
}

/** What a state says, comparable with deepEqual (entry order included). */
function view(state: RegistryState) {
  return {
    version: state.version,
    extra: state.extra,
    entries: [...state.entries].map(([k, e]: [string, Entry]) =>
      e.valid
        ? [k, { machine: { ...e.machine }, extra: e.extra }]
        : [k, { raw: e.raw, field: e.problem.field, detail: e.problem.detail, code: e.problem.code }],
    ),
  };
}

/** The full parse's result or error, and the same with the previous state and bytes. */
function both(text: string, previous: RegistryState, previousBytes: Buffer) {
  const bytes = Buffer.from(text);
  const run = (f: () => RegistryState) => {
    try {
      return { state: f() };
    } catch (err) {
      return { error: err as Error & { code?: string } };
    }
  };
  return {
    full: run(() => parseRegistry(Buffer.from(text), 'r.json')),
    changed: run(() => parseRegistry(bytes, 'r.json', previous, { previousBytes })),
    bytes,
  };
}

/**
 * Asserts that the layout memory keeps for `state` (computed by the serializer, or shifted from the one
 * before) is the one a scan of its bytes finds.
 */
function layoutMatches(state: RegistryState, bytes: Buffer, what: string) {
  const kept = layoutOf(state, bytes);
  if (!kept) return false;
  const copy = { ...state };
  setParsed(copy, bytes);
  const scanned = layoutOf(copy, bytes);
  assert.ok(scanned, `${what}: a kept layout, but the scan finds none`);
  const plain = (l: NonNullable<typeof kept>) => ({
    open: l.open,
    close: l.close,
    keys: l.keys,
    starts: l.starts,
    ends: l.ends,
  });
  assert.deepEqual(plain(kept), plain(scanned), `${what}: layout`);
  // What the top level of these bytes says (a state of version 0 is written as 1).
  const parsed = parseRegistry(bytes, 'r.json');
  assert.deepEqual([kept.version, kept.extra], [parsed.version, parsed.extra], `${what}: top level`);
  for (const [i, k] of kept.keys.entries())
    assert.equal(kept.entries[i], state.entries.get(k), `${what}: entry of ${k}`);
  return true;
}

/** Asserts the two parses agree; returns the state and bytes to go on from (undefined after an error). */
function agree(text: string, previous: RegistryState, previousBytes: Buffer, what: string) {
  const { full, changed, bytes } = both(text, previous, previousBytes);
  if (full.error || changed.error) {
    assert.equal(changed.error?.code, full.error?.code, `${what}: error codes differ`);
    assert.equal(changed.error?.message, full.error?.message, `${what}: messages differ`);
    return undefined;
  }
  assert.deepEqual(view(changed.state!), view(full.state!), what);
  if (layoutMatches(changed.state!, bytes, what)) layouts++;
  return { state: changed.state!, bytes };
}

let layouts = 0;

const NAMES = ['alpha', 'b-2', 'cé', 'd.example', 'e_1', 'zz', 'ünï', 'g<h>', 'x'];
const machineText = (r: ReturnType<typeof rng>, name: string) => {
  const fields: string[] = [`"name": ${JSON.stringify(r.next() < 0.1 ? '' : name)}`, '"type": "ssh"'];
  fields.push(`"host": ${JSON.stringify(r.pick(['h.example', 'u@h:22', '', '-oProxy=x', 'é.example']))}`);
  if (r.next() < 0.5) fields.push(`"key_path": ${JSON.stringify(r.pick(['', '~/.ssh/k', 'a\\"b']))}`);
  if (r.next() < 0.3)
    fields.push(`"custom": ${r.pick(['1', '9007199254740993', '{"a": [1, {"b": null}]}', '"s"', 'true'])}`);
  if (r.next() < 0.05) return r.pick(['"not an object"', '[1, 2]', 'null', '12']);
  return `{${r.pick(['', '\n      ', ' '])}${fields.join(r.pick([', ', ',\n      ']))}${r.pick(['', '\n    '])}}`;
};

/** One random edit of the file's text: what someone else's write could change. */
function edit(r: ReturnType<typeof rng>, text: string): { text: string; what: string; probe?: boolean } {
  const doc = JSON.parse(text) as { machines?: Record<string, unknown> };
  const names = Object.keys(doc.machines ?? {});
  const memberAt = (name: string) => {
    const key = JSON.stringify(name);
    const i = text.indexOf(`${key}:`, text.indexOf('"machines"'));
    return i;
  };
  const kind = r.int(16);
  switch (kind) {
    case 0:
    case 1:
    case 2: {
      // Add a machine, written as our serializer or the Go tool would (sorted), or anywhere by hand.
      const name = `${r.pick(NAMES)}${r.int(50)}`;
      const m = { ...(doc.machines ?? {}), [name]: JSON.parse(machineText(r, name)) };
      if (r.next() < 0.5) {
        const state = parseRegistry(Buffer.from(text), 'r.json');
        const entries = new Map(state.entries);
        try {
          entries.set(
            name,
            parseRegistry(Buffer.from(JSON.stringify({ machines: { [name]: m[name] } })), 'x').entries.get(
              name,
            )!,
          );
        } catch {
          return { text, what: 'nothing' };
        }
        return { text: serializeRegistry({ ...state, entries }).toString(), what: `serializer adds ${name}` };
      }
      const at = r.int(names.length + 1);
      if (at < names.length) {
        const i = memberAt(names[at]!);
        return {
          text: `${text.slice(0, i)}${JSON.stringify(name)}: ${machineText(r, name)},\n    ${text.slice(i)}`,
          what: `hand-add ${name} before #${at}`,
        };
      }
      const close = text.lastIndexOf('}', text.lastIndexOf('}') - 1);
      const sep = names.length ? ',\n    ' : '';
      return {
        text: `${text.slice(0, close).trimEnd()}${sep}${JSON.stringify(name)}: ${machineText(r, name)}\n  ${text.slice(close)}`,
        what: `hand-add ${name} at end`,
      };
    }
    case 3:
    case 4: {
      if (!names.length) return { text, what: 'nothing' };
      const name = r.pick(names);
      const m = { ...doc.machines };
      delete m[name];
      return {
        text: JSON.stringify({ ...doc, machines: m }, null, r.pick([2, 4, 0])),
        what: `restringify without ${name}`,
      };
    }
    case 5:
    case 6: {
      // Change one field's value in place.
      if (!names.length) return { text, what: 'nothing' };
      const name = r.pick(names);
      const i = memberAt(name);
      const h = text.indexOf('"host"', i);
      if (h < 0) return { text, what: 'nothing' };
      const v = text.indexOf('"', text.indexOf(':', h) + 1);
      const end = text.indexOf('"', v + 1);
      return {
        text: `${text.slice(0, v)}${JSON.stringify(r.pick(['n.example', '', 'bad host', 'é']))}${text.slice(end + 1)}`,
        what: `host of ${name}`,
      };
    }
    case 7: {
      // Delete a member by hand, with its separator.
      if (names.length < 2) return { text, what: 'nothing' };
      const at = 1 + r.int(names.length - 1);
      const i = memberAt(names[at]!);
      const prevEnd = text.lastIndexOf(',', i);
      const next = at + 1 < names.length ? memberAt(names[at + 1]!) : -1;
      if (next < 0) {
        const close = text.lastIndexOf('}', text.lastIndexOf('}') - 1);
        return {
          text: `${text.slice(0, prevEnd)}\n  ${text.slice(close)}`,
          what: `hand-delete last ${names[at]}`,
        };
      }
      return { text: `${text.slice(0, i)}${text.slice(next)}`, what: `hand-delete ${names[at]}` };
    }
    case 8: {
      // A duplicate key: JSON.parse keeps the last.
      if (!names.length) return { text, what: 'nothing' };
      const name = r.pick(names);
      const at = r.int(names.length);
      const i = memberAt(names[at]!);
      return {
        text: `${text.slice(0, i)}${JSON.stringify(name)}: ${machineText(r, name)},\n    ${text.slice(i)}`,
        what: `duplicate ${name}`,
        probe: true,
      };
    }
    case 9: {
      // An index-like key, which JavaScript orders first (kept: later edits go on from it).
      if (!names.length) return { text, what: 'nothing' };
      const i = memberAt(r.pick(names));
      const key = r.pick(['7', '0', '4294967294', '4294967295', '01']);
      return {
        text: `${text.slice(0, i)}"${key}": {"type": "local"},\n    ${text.slice(i)}`,
        what: `index key ${key}`,
      };
    }
    case 10:
      return { text: text.replace(/"version": \d+/, `"version": ${r.pick([0, 1, 2])}`), what: 'version' };
    case 11: {
      const close = text.lastIndexOf('}');
      return {
        text: `${text.slice(0, close).trimEnd()},\n  "extra${r.int(3)}": ${r.pick(['1', '"x"', '{"machines": {}}'])}\n}`,
        what: 'top-level field',
      };
    }
    case 12: {
      // Corrupt one byte somewhere.
      const i = r.int(text.length);
      return {
        text: `${text.slice(0, i)}${r.pick(['{', '}', ',', '"', 'x', ''])}${text.slice(i + 1)}`,
        what: `byte ${i}`,
        probe: true,
      };
    }
    case 13:
      return { text: text.slice(0, r.int(text.length)), what: 'truncated', probe: true };
    case 14: {
      // Whitespace only.
      const i = text.indexOf(',', r.int(text.length));
      if (i < 0) return { text, what: 'nothing' };
      return {
        text: `${text.slice(0, i + 1)}${r.pick([' ', '\n', '\t', '\r\n', '\u00a0'])}${text.slice(i + 1)}`,
        what: `space after ${i}`,
      };
    }
    default: {
      // A value that is a number: extend it (the byte after a value decides where it ends).
      const i = text.indexOf('"custom": 1');
      if (i < 0) return { text: text.replace('"type": "ssh"', '"type": "ssh2"'), what: 'type' };
      return { text: `${text.slice(0, i + 11)}2${text.slice(i + 11)}`, what: 'number grows' };
    }
  }
}

describe('re-reading only the changed members (_layout.ts)', () => {
  test('random edits: the changed-members parse always equals the full parse', () => {
    const edits = Number(process.env.REGISTRY_EDITS ?? 1500);
    const seed = Number(process.env.REGISTRY_SEED ?? 20261128);
    const r = rng(seed);
    let text = serializeRegistry(
      parseRegistry(Buffer.from('{"version":1,"machines":{}}'), 'r.json'),
    ).toString();
    let prev = parseRegistry(Buffer.from(text), 'r.json');
    let prevBytes: Buffer = Buffer.from(text);
    let failures = 0;
    let kept = 0;
    for (let n = 0; n < edits; n++) {
      const e = edit(r, text);
      const got = agree(e.text, prev, prevBytes, `edit ${n} (${e.what}), seed ${seed}`);
      if (!got) failures++;
      // An edit that leaves a duplicate or index-like key (or corruption) is tried, not kept: every
      // later re-read would then parse the whole file, and test nothing new.
      if (got && !e.probe) {
        // Entries a full parse always makes anew (unknown fields, invalid) kept: the changed-members path ran.
        for (const [k, entry] of got.state.entries)
          if ((!entry.valid || entry.extra.length > 0) && prev.entries.get(k) === entry) {
            kept++;
            break;
          }
        text = e.text;
        prev = got.state;
        prevBytes = got.bytes;
      }
      if (n % 50 === 49) {
        // Start again from our own serializer's bytes now and then (its layout is computed, not scanned).
        const state = parseRegistry(Buffer.from(text), 'r.json');
        prevBytes = serializeRegistry(state);
        prev = state;
        layoutMatches(state, prevBytes, `serialized after edit ${n}`);
        text = prevBytes.toString();
      }
    }
    assert.ok(layouts > edits / 2, `layouts checked: ${layouts}`);
    assert.ok(kept > edits / 10, `the changed-members parse ran (${kept} of ${edits})`);
    assert.ok(failures > 0 && failures < edits / 2, `corrupt edits were tried (${failures} of ${edits})`);
  });

  test('an unchanged entry keeps its object (the changed-members path ran), a changed one is new', () => {
    const text = JSON.stringify(
      {
        version: 1,
        machines: {
          a: { name: 'a', type: 'ssh', host: 'a.example', custom: { deep: [1] } },
          b: { name: 'b', type: 'ssh', host: 'b.example' },
          c: { name: 'c', type: 'ssh', host: 'c.example', custom: 'BIG' },
        },
      },
      null,
      2,
    ).replace('"BIG"', '9007199254740993');
    const bytes = Buffer.from(text);
    const first = parseRegistry(bytes, 'r.json');
    const next = Buffer.from(text.replace('b.example', 'B.example'));
    const second = parseRegistry(next, 'r.json', first, { previousBytes: bytes });
    // A full parse makes new entries for machines with unknown fields; only the changed-members path
    // keeps them.
    assert.equal(second.entries.get('a'), first.entries.get('a'));
    assert.equal(second.entries.get('c'), first.entries.get('c'));
    assert.notEqual(second.entries.get('b'), first.entries.get('b'));
    assert.equal((second.entries.get('b') as { machine: { host: string } }).machine.host, 'B.example');
    // And it goes on from its own result: a second change, then one from our serializer.
    const third = Buffer.from(next.toString().replace('"a.example"', '"A.example"'));
    const s3 = parseRegistry(third, 'r.json', second, { previousBytes: next });
    assert.equal(s3.entries.get('c'), first.entries.get('c'));
    assert.deepEqual(view(s3), view(parseRegistry(third, 'r.json')));
    const ours = serializeRegistry(s3);
    const fourth = Buffer.from(ours.toString().replace('"c.example"', '"C.example"'));
    const s4 = parseRegistry(fourth, 'r.json', s3, { previousBytes: ours });
    assert.equal(s4.entries.get('a'), s3.entries.get('a'));
    assert.deepEqual(view(s4), view(parseRegistry(fourth, 'r.json')));
  });

  test('hand-made edge cases agree with the full parse', () => {
    const m = (host: string) => `{"type": "ssh", "host": "${host}"}`;
    const doc = (members: string) => `{\n  "version": 1,\n  "machines": {${members}}\n}`;
    const deep = `${'['.repeat(9998)}${']'.repeat(9998)}`;
    const pad = Array.from({ length: 1000 }, (_, i) => `"p${i}": ${m(`p${i}.example`)}`).join(', ');
    const three = doc(`\n    "a": ${m('a.x')},\n    "b": 1,\n    "c": ${m('c.x')}\n  `);
    const cases: [string, string][] = [
      [three, three.replace('"b": 1', '"b": 12')], // a number grows: the byte after a value decides its end
      [three, three.replace('"b": 1', '"b": 1.5e3')],
      [doc('"b": 1'), doc('"b": 12')],
      [three, three.replace('"b": 1,', '"b": 1')], // the comma between members removed: corrupt
      [three, three.replace(`"c": ${m('c.x')}`, `"c": ${m('c.x')},`)], // trailing comma: corrupt
      [three, three.replace('{\n    "a"', '{,\n    "a"')], // leading comma: corrupt
      [three, three.replace('"b": 1,', '"b": 1,,')], // two commas: corrupt
      [doc(`"a": ${m('a.x')} , "c": 1`), doc(`"a": ${m('a.x')} "x": 1, "c": 1`)], // no comma before a new member
      [doc(`"a": ${m('a.x')} , "c": 1`), doc(`"a": ${m('a.x')} , "x": 1 "c": 1`)], // none after it
      [three, three.replace(/,\n {4}"b": 1/, '')], // a member removed with its comma
      [three, three.replace(/\n {4}"a": \{[^}]*\},/, '')], // the first member removed
      [three, three.replace(/,\n {4}"c": \{[^}]*\}/, '')], // the last member removed
      [three, doc('')], // every member removed
      [doc(''), three], // from none
      [three, three.replace('"b": 1', '"b": 1, "b2": 2')],
      [three, three.replace('"b": 1', '"\\u0061": 1')], // an escaped key equal to another: duplicate
      [three, three.replace('"b": 1', '"a": 1')], // a duplicate: JSON.parse keeps the last
      [three, three.replace('"c": {', '"a": {')],
      [three, three.replace('"b": 1', '"9": 1')], // an index-like key: ordered first
      [three, three.replace('"b": 1', '"b": "é\\"x"')],
      [three, three.replace('"version": 1', '"version": 2')],
      [three, three.replace('"version": 1', '"version": 1, "machines": {}')], // a second "machines"
      [three, `${three.slice(0, -2)},\n  "machines": {"z": ${m('z.x')}}\n}`],
      [three, three.replace(/\n/g, '\r\n')],
      [three, three.replace('"b": 1', '"b": 1\u00a0')], // not JSON whitespace: corrupt
      [three, three.replace('a.x', 'a.y')],
      [three, three.replace('"a": {', '"a" : {')],
      [three, `\ufeff${three}`],
      // Nesting too deep inside the run: the error names the file's position, not the run's.
      // (Many members around it, so that the run is a small part of the file.)
      [doc(`${pad}, "b": 1`), doc(`${pad}, "b": ${deep}`)],
      // ... unless a later duplicate outside the run is the value that counts (then it is no error).
      [doc(`"x": 1, "a": 1, ${pad}`), doc(`"a": ${deep}, "a": 1, ${pad}`)],
      [doc(`"x": 1, "y": 1, ${pad}`), doc(`"b": ${deep}, "0": 1, "y": 1, ${pad}`)],
    ];
    for (const [before, after] of cases) {
      const bytes = Buffer.from(before);
      const state = parseRegistry(bytes, 'r.json');
      agree(after, state, bytes, `${JSON.stringify(before)} -> ${JSON.stringify(after)}`);
      const ours = serializeRegistry(state);
      agree(
        after.replace(before, ours.toString()),
        state,
        ours,
        `from our serializer: ${JSON.stringify(after)}`,
      );
    }
  });

  test('previous bytes that are not what the state was read from are not trusted', () => {
    const a = Buffer.from('{"version": 1, "machines": {"x": {"type": "ssh", "host": "x.example"}}}');
    const state = parseRegistry(a, 'r.json');
    const other = Buffer.from('{"version": 1, "machines": {"y": {"type": "ssh", "host": "y.example"}}}');
    const next = Buffer.from('{"version": 1, "machines": {"y": {"type": "ssh", "host": "Y.example"}}}');
    const got = parseRegistry(next, 'r.json', state, { previousBytes: other });
    assert.deepEqual(view(got), view(parseRegistry(next, 'r.json')));
    assert.deepEqual([...got.entries.keys()], ['y', 'local']);
  });
});
