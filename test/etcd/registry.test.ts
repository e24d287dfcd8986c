/**
 * EtcdMachineRegistry beyond the shared Registry contract, in one process against a throwaway etcd: the
 * key layout, reads kept current by the watch, conflicts and their retries, resent and failed
 * transactions, compaction, corrupt keys, close(). Some tests open the registry on a client wrapper that
 * can hold or break the watch and duplicate or fail transactions, to make races happen on demand.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setImmediate as yieldTurn } from 'node:timers/promises';
import { Etcd3 } from 'etcd3';
import {
  type EtcdClient,
  loadClient,
  prefixEnd,
  type WatchHandle,
  type WatchListener,
  type WatchRequest,
} from '../../src/etcd/_client.js';
import { Session } from '../../src/etcd/_session.js';
import { EtcdUnavailableError } from '../../src/etcd/errors.js';
import { Etcd } from '../../src/etcd/index.js';
import { EtcdMachineRegistry, type EtcdRegistryOptions } from '../../src/etcd/registry.js';
import { useEtcd } from './etcd-server.js';

const prefix = 'reg-test/';
let raw: EtcdClient;
const sessions: Etcd[] = [];
const cleanups: (() => Promise<void>)[] = [];
const etcd = useEtcd({
  setup: async (cluster) => {
    raw = await loadClient(cluster.endpoints(), 2000);
  },
  teardown: async () => {
    for (const c of cleanups) await c().catch(() => {});
    for (const s of sessions) await s.close().catch(() => {});
    raw.close();
  },
});

/** A new Etcd on the test cluster, closed after the file. */
async function connect(townPrefix = prefix): Promise<Etcd> {
  const s = await Etcd.connect({ endpoints: etcd.cluster.endpoints(), prefix: townPrefix });
  sessions.push(s);
  return s;
}

let seq = 0;
const fresh = () => `r${++seq}`;
const ssh = (name: string, host = `${name}.example`) => ({ name, type: 'ssh' as const, host });
const root = (name: string) => `${prefix}registry/${name}/`;
const machineKey = (registry: string, machine: string) => `${root(registry)}machines/${machine}`;

/** Waits (bounded, checking at every turn of the event loop) until `check()` holds. */
async function until(check: () => boolean, what: string, ms = 5000): Promise<void> {
  const due = performance.now() + ms;
  while (!check()) {
    if (performance.now() > due) throw new Error(`${what}: not within ${ms} ms`);
    await yieldTurn();
  }
}

/** The keys under a registry's root, with their values. */
async function keysOf(registry: string) {
  const res = await raw.range({ key: root(registry), rangeEnd: prefixEnd(root(registry)) });
  return res.kvs;
}

/**
 * An EtcdClient in front of the real one, with switches: `holdWatches` queues watch events instead of
 * delivering them (a stale reader), `deferWatches` keeps new watches from starting, `breakWatches()`
 * ends every watch with an error, `duplicateTxns` sends every transaction twice (a resend whose first
 * copy was applied), `failTxns` fails them as if no endpoint answered. `txns` counts transactions.
 */
function controllable(inner: EtcdClient) {
  interface Tap {
    request: WatchRequest;
    listener: WatchListener;
    handle: WatchHandle | undefined;
    queued: (() => void)[];
    closed: boolean;
  }
  const taps = new Set<Tap>();
  const ctl = {
    holdWatches: false,
    deferWatches: false,
    duplicateTxns: false,
    failTxns: false,
    /**
     * Once set, the next writing transaction is applied, its answer lost, then this runs (the test ends
     * the session lease), then the transaction is resent: a resend after the lease ended.
     */
    beforeResend: undefined as (() => Promise<void>) | undefined,
    txns: 0,
    /** Watches open (or waiting to open). */
    watches: () => [...taps].filter((t) => !t.closed).length,
    /** Watches waiting to open. */
    deferred: () => [...taps].filter((t) => !t.closed && !t.handle).length,
    release() {
      ctl.holdWatches = false;
      for (const t of taps) for (const deliver of t.queued.splice(0)) deliver();
    },
    startDeferred() {
      ctl.deferWatches = false;
      for (const t of taps) if (!t.closed && !t.handle) start(t);
    },
    breakWatches() {
      for (const t of taps) {
        if (t.closed || !t.handle) continue;
        t.closed = true;
        t.handle.close();
        t.listener.onEnd({ error: new Error('broken by the test'), compactRevision: undefined });
      }
    },
  };
  const start = (t: Tap) => {
    t.handle = inner.watch(t.request, {
      onCreated: (revision) => t.listener.onCreated?.(revision),
      onEvents: (events, revision) => {
        const deliver = () => !t.closed && t.listener.onEvents(events, revision);
        if (ctl.holdWatches || t.queued.length > 0) t.queued.push(deliver);
        else deliver();
      },
      onEnd: (end) => {
        if (t.closed) return;
        t.closed = true;
        t.listener.onEnd(end);
      },
    });
  };
  const client: EtcdClient = {
    endpoints: inner.endpoints,
    maxTxnOps: inner.maxTxnOps,
    range: (op) => inner.range(op),
    put: (op, options) => inner.put(op, options),
    delete: (op, options) => inner.delete(op, options),
    leaseGrant: (ttl) => inner.leaseGrant(ttl),
    leaseRevoke: (id) => inner.leaseRevoke(id),
    leaseTimeToLive: (id) => inner.leaseTimeToLive(id),
    keepAlive: (id, listener) => inner.keepAlive(id, listener),
    close: () => inner.close(),
    txn: async (request, options) => {
      ctl.txns++;
      if (ctl.failTxns) throw new EtcdUnavailableError(inner.endpoints, 'injected: no answer');
      if (ctl.duplicateTxns) await inner.txn(request, options);
      const beforeResend = ctl.beforeResend;
      if (beforeResend && request.success.some((op) => op.type === 'put')) {
        ctl.beforeResend = undefined;
        await inner.txn(request, options); // applied; its answer is lost
        await beforeResend();
      }
      return inner.txn(request, options);
    },
    watch: (request, listener) => {
      const t: Tap = { request, listener, handle: undefined, queued: [], closed: false };
      taps.add(t);
      if (!ctl.deferWatches) start(t);
      return {
        close: () => {
          t.closed = true;
          t.handle?.close();
        },
      };
    },
  };
  return { client, ctl };
}

/** A registry opened on a controllable client of its own (its own session too). */
async function controlled(name: string, options?: EtcdRegistryOptions) {
  const { client, ctl } = controllable(await loadClient(etcd.cluster.endpoints(), 2000));
  const session = new Session(client, 10);
  const registry = await EtcdMachineRegistry.open(
    { client, session, prefix, onClose: () => {} },
    name,
    options,
  );
  cleanups.push(async () => {
    await registry.close();
    await session.close();
  });
  return { registry, ctl, session };
}

test('layout: one key per machine in the file entry form, no meta written, removes rewrite the epoch, a batch id on the session lease', async (t) => {
  if (!etcd.ready(t)) return;
  const s = await connect();
  const name = fresh();
  const reg = await s.registry(name);
  await reg.add({ name: 'web', type: 'ssh', host: 'u@web:22', townPath: '/t' });
  const kvs = await keysOf(name);
  assert.deepEqual(
    kvs.map((kv) =>
      kv.key
        .slice(root(name).length)
        .replace(/-\d+$/, '-N')
        .replace(/[0-9a-f]{8,}/, 'LEASE'),
    ),
    ['machines/web', 'writers/LEASE-N'],
  );
  assert.equal(
    kvs[0]!.value,
    '{\n      "name": "web",\n      "type": "ssh",\n      "host": "u@web:22",\n      "key_path": "",\n      "town_path": "/t"\n    }',
  );
  assert.notEqual(kvs[1]!.lease, 0n, 'the batch id goes with the session lease');
  await reg.remove('web');
  const after = (await keysOf(name)).map((kv) => kv.key.slice(root(name).length));
  assert.ok(after.includes('epoch') && !after.includes('machines/web'), JSON.stringify(after));
  assert.equal(reg.location, `etcd://${etcd.cluster.endpoints().join(',')}/${root(name)}`);
});

test('reads follow another process’s writes through the watch, without reload, and never go back', async (t) => {
  if (!etcd.ready(t)) return;
  const name = fresh();
  const writer = await (await connect()).registry(name);
  const reader = await (await connect()).registry(name);
  let seen = 0;
  let regressions = 0;
  const writes = (async () => {
    for (let i = 0; i < 30; i++) await writer.add(ssh(`w${i}`));
  })();
  let done = false;
  writes.finally(() => {
    done = true;
  });
  while (!done || reader.list().length < 31) {
    const n = reader.list().length;
    if (n < seen) regressions++;
    seen = Math.max(seen, n);
    await yieldTurn();
    if (done) await until(() => reader.list().length === 31, 'the reader sees every add');
  }
  await writes;
  assert.equal(regressions, 0);
  assert.equal(reader.list().length, 31);
});

test('update(): on a conflict fn runs again on fresh state, and both changes are kept', async (t) => {
  if (!etcd.ready(t)) return;
  const name = fresh();
  const reg = await (await connect()).registry(name);
  let calls = 0;
  const seenInside: string[][] = [];
  await reg.update(async (d) => {
    calls++;
    seenInside.push(d.list().map((m) => m.name));
    // Another writer commits while fn runs (a raw put: a registry write here would be re-entrant).
    if (calls === 1)
      await raw.put({ key: machineKey(name, 'meanwhile'), value: '{"name":"meanwhile","type":"local"}' });
    d.add(ssh('mine'));
  });
  assert.equal(calls, 2, 'fn ran again after the conflict');
  assert.deepEqual(seenInside, [['local'], ['local', 'meanwhile']]);
  await reg.reload();
  assert.deepEqual(
    reg.list().map((m) => m.name),
    ['local', 'meanwhile', 'mine'],
  );
});

test('adds and removes of different machines never conflict, even on a stale snapshot; an update on it retries', async (t) => {
  if (!etcd.ready(t)) return;
  const name = fresh();
  const other = await (await connect()).registry(name);
  const { registry: stale, ctl } = await controlled(name);
  ctl.holdWatches = true;
  await other.add(ssh('theirs'));
  await other.add(ssh('theirs2'));
  await other.remove('theirs2');
  assert.equal(stale.has('theirs'), false, 'the stale reader has not seen it');
  ctl.txns = 0;
  await stale.add(ssh('mine'));
  await stale.remove('mine');
  await stale.add(ssh('mine2'));
  assert.equal(ctl.txns, 3, 'one transaction per write: no conflict');
  let calls = 0;
  await stale.update((d) => {
    calls++;
    d.add(ssh('by-update'));
  });
  assert.equal(ctl.txns, 5, 'the update conflicted once');
  assert.equal(calls, 2);
  assert.ok(stale.has('theirs'), 'the conflict brought the reader up to date');
  ctl.release();
  await other.reload();
  assert.deepEqual(
    other.list().map((m) => m.name),
    ['by-update', 'local', 'mine2', 'theirs'],
  );
});

test('an update racing another process’s remove sees the remove (deleting batches rewrite the epoch)', async (t) => {
  if (!etcd.ready(t)) return;
  const name = fresh();
  const other = await (await connect()).registry(name);
  await other.add(ssh('x'));
  const { registry: stale, ctl } = await controlled(name);
  ctl.holdWatches = true;
  await other.remove('x');
  assert.equal(stale.has('x'), true, 'the stale reader has not seen the remove');
  const seen = await stale.update((d) => {
    if (d.has('x')) d.add(ssh('saw-x'));
    return d.has('x');
  });
  assert.equal(seen, false, 'the committed run of fn saw x removed');
  ctl.release();
  await other.reload();
  assert.deepEqual(
    other.list().map((m) => m.name),
    ['local'],
  );
});

test('an add that changes nothing is checked against its own key only, and does not make a stale snapshot pass for current', async (t) => {
  if (!etcd.ready(t)) return;
  const name = fresh();
  const other = await (await connect()).registry(name);
  const { registry: stale, ctl } = await controlled(name);
  await stale.add(ssh('same'));
  ctl.holdWatches = true;
  await other.add(ssh('unseen'));
  ctl.txns = 0;
  await stale.add(ssh('same')); // the same machine again: nothing to write, its key is checked
  assert.equal(ctl.txns, 1);
  assert.deepEqual(
    await stale.update((d) => d.list().map((m) => m.name)),
    ['local', 'same', 'unseen'],
    'the update saw the machine its snapshot had missed',
  );
  ctl.release();
});

test('lockTimeout bounds the retries: a negative one makes one attempt and fails with ERR_LOCK_TIMEOUT', async (t) => {
  if (!etcd.ready(t)) return;
  const name = fresh();
  const other = await (await connect()).registry(name);
  const { registry: stale, ctl } = await controlled(name, { lockTimeout: -1 });
  ctl.holdWatches = true;
  await other.add(ssh('theirs'));
  await assert.rejects(
    stale.update((d) => d.add(ssh('mine'))),
    (err: Error & { code?: string }) => {
      assert.equal(err.code, 'ERR_LOCK_TIMEOUT');
      assert.match(err.message, new RegExp(`registry/${name}/`));
      return true;
    },
  );
  await stale.add(ssh('an-add')); // no conflict: still one attempt, and it succeeds
  ctl.release();
});

test('a transaction resent after its first copy was applied is recognised: applied once, fn run once', async (t) => {
  if (!etcd.ready(t)) return;
  const name = fresh();
  const { registry: reg, ctl } = await controlled(name);
  await reg.add({ name: 'counter', type: 'local', townPath: '0' });
  ctl.duplicateTxns = true;
  await reg.add(ssh('once'));
  let calls = 0;
  await reg.update((d) => {
    calls++;
    const c = d.get('counter');
    d.add({ ...c, townPath: String(Number(c.townPath) + 1) });
  });
  ctl.duplicateTxns = false;
  assert.equal(calls, 1);
  const kv = (await raw.range({ key: machineKey(name, 'once') })).kvs[0]!;
  assert.equal(kv.version, 1n, 'put once');
  await reg.reload();
  assert.equal(reg.get('counter').townPath, '1');
  assert.ok(reg.has('once'));
});

test('a resend after the session lease ended fails with ERR_ETCD_UNAVAILABLE instead of running the batch again', async (t) => {
  if (!etcd.ready(t)) return;
  const name = fresh();
  const { registry: reg, ctl, session } = await controlled(name);
  await reg.add({ name: 'counter', type: 'local', townPath: '0' });
  await reg.reload(); // so that the update's first copy passes its compare
  // The first copy is applied and its answer lost; then the lease ends (its writer key, the proof that
  // the copy was applied, goes with it) and the process notices; then the client resends.
  ctl.beforeResend = async () => {
    const lease = await session.current();
    await raw.leaseRevoke(lease.id);
    session.markLost(lease, 'revoked by the test');
  };
  let calls = 0;
  await assert.rejects(
    reg.update((d) => {
      calls++;
      const c = d.get('counter');
      d.add({ ...c, townPath: String(Number(c.townPath) + 1) });
    }),
    { code: 'ERR_ETCD_UNAVAILABLE', message: /may or may not have been applied/ },
  );
  assert.equal(calls, 1, 'the callback is not run again');
  await reg.reload();
  assert.equal(reg.get('counter').townPath, '1', 'applied once, by the first copy');
  await reg.add(ssh('after')); // the registry goes on under a new lease
  assert.ok(reg.has('after'));
});

test('a write of unknown outcome fails for every caller with ERR_ETCD_UNAVAILABLE and leaves no phantom', async (t) => {
  if (!etcd.ready(t)) return;
  const name = fresh();
  const { registry: reg, ctl } = await controlled(name);
  await reg.add(ssh('kept'));
  ctl.failTxns = true;
  const results = await Promise.allSettled([reg.add(ssh('ghost')), reg.remove('kept')]);
  for (const r of results) {
    assert.equal(r.status, 'rejected');
    assert.equal((r as PromiseRejectedResult).reason.code, 'ERR_ETCD_UNAVAILABLE');
  }
  assert.equal(reg.has('ghost'), false);
  assert.equal(reg.has('kept'), true);
  ctl.failTxns = false;
  await reg.add(ssh('after'));
  await reg.reload();
  assert.deepEqual(
    reg.list().map((m) => m.name),
    ['after', 'kept', 'local'],
  );
});

test('after a compaction the registry is read again whole: adds and removes made while its watch was down are seen', async (t) => {
  if (!etcd.ready(t)) return;
  const name = fresh();
  const other = await (await connect()).registry(name);
  await other.add(ssh('gone'));
  await other.add(ssh('stay'));
  const { registry: reg, ctl } = await controlled(name);
  assert.ok(reg.has('gone'));
  ctl.deferWatches = true;
  ctl.breakWatches();
  await until(() => ctl.deferred() === 1, 'the registry reopens its watch');
  await other.remove('gone');
  await other.add(ssh('new'));
  const latest = (await raw.range({ key: root(name) })).revision;
  const compactor = new Etcd3({ hosts: `http://${etcd.cluster.endpoints()[0]}` });
  try {
    await compactor.kv.compact({ revision: String(latest), physical: true });
  } finally {
    compactor.close();
  }
  ctl.startDeferred();
  await until(() => reg.has('new') && !reg.has('gone'), 'the registry reads everything again');
  await other.add(ssh('later'));
  await until(() => reg.has('later'), 'and watches from there');
});

test('a corrupt key is ERR_REGISTRY_CORRUPT for reads and writes until fixed; a newer version is ERR_REGISTRY_VERSION', async (t) => {
  if (!etcd.ready(t)) return;
  const name = fresh();
  const reg = await (await connect()).registry(name);
  await reg.add(ssh('fine'));
  await raw.put({ key: machineKey(name, 'bad'), value: '{"name": "bad", oops' });
  await until(() => {
    try {
      reg.list();
      return false;
    } catch {
      return true;
    }
  }, 'the watch brings the corrupt key');
  assert.throws(() => reg.get('fine'), { code: 'ERR_REGISTRY_CORRUPT', message: /machines\/bad/ });
  await assert.rejects(reg.add(ssh('x')), { code: 'ERR_REGISTRY_CORRUPT' });
  assert.equal((await raw.range({ key: machineKey(name, 'x') })).kvs.length, 0, 'nothing written');
  await raw.delete({ key: machineKey(name, 'bad') });
  await until(() => {
    try {
      return reg.has('fine');
    } catch {
      return false;
    }
  }, 'fixed');
  await reg.add(ssh('x'));

  const newer = fresh();
  await raw.put({ key: `${root(newer)}meta`, value: '{"version": 2, "shards": 4}' });
  const future = await (await connect()).registry(newer);
  assert.throws(() => future.list(), { code: 'ERR_REGISTRY_VERSION' });
  await assert.rejects(future.add(ssh('x')), { code: 'ERR_REGISTRY_VERSION' });
  assert.deepEqual(
    (await keysOf(newer)).map((kv) => kv.key),
    [`${root(newer)}meta`],
  );
});

test('two keys for one machine (machines/%62 written by hand beside machines/b) are ERR_REGISTRY_CORRUPT naming both, for every process, until one is deleted', async (t) => {
  if (!etcd.ready(t)) return;
  const name = fresh();
  const reg = await (await connect()).registry(name, { lockTimeout: 2000 });
  await reg.add({ name: 'b', type: 'local', townPath: '/canonical' });
  await reg.add(ssh('other'));
  await raw.put({ key: machineKey(name, '%62'), value: '{"name":"b","type":"local","town_path":"/odd"}' });
  const corrupt = (err: Error & { code?: string }) => {
    assert.equal(err.code, 'ERR_REGISTRY_CORRUPT');
    assert.ok(err.message.includes(machineKey(name, 'b')), err.message);
    assert.ok(err.message.includes(machineKey(name, '%62')), err.message);
    return true;
  };
  await until(() => {
    try {
      reg.list();
      return false;
    } catch {
      return true;
    }
  }, 'the watch brings the second key');
  assert.throws(() => reg.get('b'), corrupt);
  await assert.rejects(reg.remove('b'), corrupt);
  await assert.rejects(reg.add({ name: 'b', type: 'local', townPath: '/new' }), corrupt);
  await assert.rejects(reg.reload(), corrupt);
  assert.equal(
    (await keysOf(name)).filter((kv) => kv.key.includes('/machines/')).length,
    3,
    'nothing written',
  );
  const fresh2 = await (await connect()).registry(name);
  assert.throws(() => fresh2.list(), corrupt, 'a fresh process sees the same');
  // Fixed by hand: the odd key goes, and everything works again (remove removes the name).
  await raw.delete({ key: machineKey(name, '%62') });
  await reg.reload();
  assert.equal(reg.get('b').townPath, '/canonical');
  await reg.remove('b');
  await reg.reload();
  assert.equal(reg.has('b'), false);
  await fresh2.reload();
  assert.equal(fresh2.has('b'), false);
  await reg.add({ name: 'b', type: 'local', townPath: '/new' });
  await fresh2.reload();
  assert.equal(fresh2.get('b').townPath, '/new');
});

test('close() stops the watch and refuses writes and reloads; Etcd.close() closes the registries it opened', async (t) => {
  if (!etcd.ready(t)) return;
  const name = fresh();
  const { registry: reg, ctl } = await controlled(name);
  await reg.add(ssh('before'));
  assert.equal(ctl.watches(), 1);
  await reg.close();
  assert.equal(ctl.watches(), 0);
  assert.ok(reg.has('before'), 'reads serve the last snapshot');
  await assert.rejects(reg.add(ssh('x')), { code: 'ERR_ETCD_UNAVAILABLE', message: /closed/ });
  await assert.rejects(reg.reload(), { code: 'ERR_ETCD_UNAVAILABLE' });
  await reg.close(); // idempotent

  const e = await Etcd.connect({ endpoints: etcd.cluster.endpoints(), prefix });
  const a = await e.registry(name);
  const b = await e.registry(fresh());
  await e.close();
  for (const r of [a, b])
    await assert.rejects(r.add(ssh('y')), { code: 'ERR_ETCD_UNAVAILABLE', message: /closed/ });
});

test('registry names and options are checked (ERR_INVALID_OPTION); names and prefixes are isolated', async (t) => {
  if (!etcd.ready(t)) return;
  const s = await connect();
  await assert.rejects(s.registry(''), { code: 'ERR_INVALID_OPTION', message: /option name:/ });
  await assert.rejects(s.registry(3 as never), { code: 'ERR_INVALID_OPTION', message: /option name:/ });
  // A lone surrogate has no UTF-8 form (encodeURIComponent throws URIError on it).
  await assert.rejects(s.registry('a\uD800b'), { code: 'ERR_INVALID_OPTION', message: /option name:/ });
  await assert.rejects(s.registry('x', { lockTimeout: 'soon' as never }), {
    code: 'ERR_INVALID_OPTION',
    message: /option lockTimeout:/,
  });
  const name = fresh();
  const regs = [
    await s.registry(name),
    await s.registry(`${name}/x`),
    await s.registry(`${name}-x`),
    await (await connect('other-town/')).registry(name),
  ];
  // Machine names never reach the key encoder unchecked.
  await assert.rejects(regs[0]!.add({ name: 'a\uD800b', type: 'local' }), { code: 'ERR_INVALID_MACHINE' });
  await assert.rejects(regs[0]!.remove('a\uD800b'), { code: 'ERR_MACHINE_NOT_FOUND' });
  for (const [i, r] of regs.entries()) await r.add(ssh(`only${i}`));
  for (const [i, r] of regs.entries()) {
    await r.reload();
    assert.deepEqual(
      r.list().map((m) => m.name),
      ['local', `only${i}`],
    );
  }
});

test('an update() too large for one etcd transaction fails alone with ERR_ETCD_TXN_TOO_LARGE; nothing of it is applied', async (t) => {
  if (!etcd.ready(t)) return;
  const name = fresh();
  const reg = await (await connect()).registry(name);
  const results = await Promise.allSettled([
    reg.add(ssh('before')),
    reg.update((d) => {
      for (let i = 0; i < 300; i++) d.add(ssh(`m${i}`));
    }),
    reg.add(ssh('after')),
  ]);
  assert.equal(results[0]!.status, 'fulfilled');
  assert.equal(results[2]!.status, 'fulfilled');
  assert.equal(results[1]!.status, 'rejected');
  const err = (results[1] as PromiseRejectedResult).reason;
  assert.equal(err.code, 'ERR_ETCD_TXN_TOO_LARGE');
  assert.equal(err.name, 'EtcdTxnTooLargeError');
  // 300 puts and the batch id in the success list; the limit; the remedies.
  assert.match(err.message, /301 operations/);
  assert.match(err.message, /128/);
  assert.match(err.message, /--max-txn-ops/);
  assert.match(err.message, /maxTxnOps/);
  assert.match(err.message, new RegExp(`registry/${name}/`));
  await reg.reload();
  assert.deepEqual(
    reg.list().map((m) => m.name),
    ['after', 'before', 'local'],
  );
  const machines = (await keysOf(name)).filter((kv) => kv.key.includes('/machines/'));
  assert.equal(machines.length, 2, 'no key of the large update was written');
});

test('300 concurrent add() from one process all succeed, split into several transactions etcd takes', async (t) => {
  if (!etcd.ready(t)) return;
  const name = fresh();
  const reg = await (await connect()).registry(name);
  const names = Array.from({ length: 300 }, (_, i) => `c${String(i).padStart(3, '0')}`);
  await Promise.all(names.map((n) => reg.add(ssh(n))));
  const other = await (await connect()).registry(name);
  assert.equal(other.list().length, 301);
  // Each transaction writes its machines at one revision: the revisions show how the adds were split.
  const mods = new Map((await keysOf(name)).map((kv) => [kv.key, kv.modRevision]));
  const byRevision = new Map<bigint, number>();
  let last = 0n;
  for (const n of names) {
    const mod = mods.get(machineKey(name, n))!;
    assert.ok(mod >= last, `${n} committed in arrival order`);
    last = mod;
    byRevision.set(mod, (byRevision.get(mod) ?? 0) + 1);
  }
  assert.ok(byRevision.size >= 3, `${byRevision.size} transactions`);
  for (const count of byRevision.values()) assert.ok(count <= 127, `${count} adds in one transaction`);
});
