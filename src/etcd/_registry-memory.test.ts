/**
 * RegistryMemory without etcd: changes from full reads, the watch, conflict answers and own commits
 * arrive in any order, and memory never goes back (monotonic), never loses its own commits
 * (read-your-writes), and never brings back a machine it saw deleted.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseEntry } from '../registry/_format.js';
import type { KeyValue, WatchEvent } from './_client.js';
import { RegistryKeys } from './_registry-keys.js';
import { modOf, RegistryMemory } from './_registry-memory.js';

const keys = new RegistryKeys('t/', 'machines');
const value = (name: string, host: string) => JSON.stringify({ name, type: 'ssh', host });
const kv = (name: string, host: string, mod: number): KeyValue => ({
  key: keys.machine(name),
  value: value(name, host),
  createRevision: 1n,
  modRevision: BigInt(mod),
  version: 1n,
  lease: 0n,
});
const put = (name: string, host: string, mod: number): WatchEvent => ({
  type: 'put',
  kv: kv(name, host, mod),
  prevKv: undefined,
});
const del = (name: string, mod: number): WatchEvent => ({
  type: 'delete',
  kv: { ...kv(name, '', mod), value: '' },
  prevKv: undefined,
});
const hostOf = (m: RegistryMemory, name: string) => {
  const e = m.snapshot().state.entries.get(name);
  return e?.valid ? e.machine.host : undefined;
};
const entry = (name: string, host: string) => parseEntry(name, value(name, host), 'test');

test('a late report of an older change never replaces a newer one (per key), and W never goes down', () => {
  const m = new RegistryMemory(keys, 'test');
  m.loadAll([kv('a', 'one', 5)], 10n);
  m.applyEvents([put('a', 'two', 12)]);
  assert.equal(hostOf(m, 'a'), 'two');
  m.applyChanges([kv('a', 'one', 5)], 11n); // older than what memory holds
  assert.equal(hostOf(m, 'a'), 'two');
  m.loadAll([kv('a', 'one', 5)], 11n); // a full read older than W is ignored
  assert.equal(hostOf(m, 'a'), 'two');
  assert.equal(m.watermark, 12n);
  assert.equal(modOf(m.snapshot().state.entries.get('a')), 12n);
});

test('an own commit is read at once and survives a full read made before it', () => {
  const m = new RegistryMemory(keys, 'test');
  m.loadAll([], 10n);
  m.publish(new Map([[keys.machine('b'), entry('b', 'mine')]]), 15n, false);
  assert.equal(hostOf(m, 'b'), 'mine');
  assert.equal(m.watermark, 10n, 'a per-key commit does not claim others were seen');
  m.loadAll([], 13n); // a reload answered at 13, before the commit at 15
  assert.equal(hostOf(m, 'b'), 'mine');
  m.publish(new Map([[keys.machine('b'), entry('b', 'mine2')]]), 17n, false);
  m.applyEvents([put('b', 'mine', 15)]); // the watch's echo of the first commit comes after the second
  assert.equal(m.watermark, 15n);
  assert.equal(hostOf(m, 'b'), 'mine2');
});

test('a machine deleted by an own commit does not come back through a late report of its earlier put', () => {
  const m = new RegistryMemory(keys, 'test');
  m.loadAll([], 10n);
  m.publish(new Map([[keys.machine('c'), entry('c', 'x')]]), 12n, false);
  m.publish(new Map([[keys.machine('c'), undefined]]), 14n, false);
  assert.equal(m.snapshot().state.entries.has('c'), false);
  m.applyEvents([put('c', 'x', 12)]); // the watch is late: it reports the put now
  assert.equal(m.snapshot().state.entries.has('c'), false, 'the tombstone keeps it deleted');
  m.applyEvents([del('c', 14)]);
  assert.equal(m.snapshot().state.entries.has('c'), false);
});

test('a full read newer than memory drops machines deleted meanwhile', () => {
  const m = new RegistryMemory(keys, 'test');
  m.loadAll([kv('d', 'x', 3), kv('e', 'y', 4)], 10n);
  m.loadAll([kv('e', 'y', 4)], 20n);
  assert.deepEqual([...m.snapshot().state.entries.keys()].sort(), ['e', 'local']);
  assert.equal(m.snapshot().revision, 20n);
});

test('a snapshot is made once per change, and a corrupt key is reported, not served', () => {
  const m = new RegistryMemory(keys, 'test');
  m.loadAll([kv('f', 'x', 3)], 10n);
  const s = m.snapshot();
  assert.equal(m.snapshot(), s);
  m.applyEvents([{ type: 'put', kv: { ...kv('g', '', 11), value: 'not json' }, prevKv: undefined }]);
  assert.notEqual(m.snapshot(), s);
  assert.equal((m.snapshot().error as { code?: string }).code, 'ERR_REGISTRY_CORRUPT');
  assert.match(m.snapshot().error!.message, /t\/registry\/machines\/machines\/g/);
  m.applyEvents([del('g', 12)]);
  assert.equal(m.snapshot().error, undefined);
});

test('two keys for one name are tracked each: corrupt (naming both) while both live; deleting one serves the other', () => {
  const m = new RegistryMemory(keys, 'test');
  const odd = (mod: number): KeyValue => ({ ...kv('b', 'odd', mod), key: `${keys.root}machines/%62` });
  m.loadAll([kv('b', 'canonical', 5), odd(6)], 10n);
  const error = m.snapshot().error as Error & { code?: string };
  assert.equal(error.code, 'ERR_REGISTRY_CORRUPT');
  assert.match(error.message, /machines\/%62 and .*machines\/b both hold machine "b"/);
  // The canonical key is deleted (a tombstone newer than the odd key): the odd one is b now.
  m.applyEvents([del('b', 11)]);
  assert.equal(m.snapshot().error, undefined);
  assert.equal(hostOf(m, 'b'), 'odd');
  assert.equal(m.snapshot().keyOf('b'), `${keys.root}machines/%62`, 'writes go to the key that holds it');
  m.loadAll([odd(6)], 12n);
  assert.equal(hostOf(m, 'b'), 'odd', 'a full read agrees');
});
