/**
 * etcd's limit on the operations of one transaction (`--max-txn-ops`) and townlock's matching option
 * `maxTxnOps`, against two throwaway members: one started with `--max-txn-ops 16`, one with 1024. Many
 * small writes are split into transactions under the limit; one write over it fails alone with
 * ERR_ETCD_TXN_TOO_LARGE before anything is sent; a cluster whose limit is lower than the option still
 * gives that typed error; a cluster with a larger limit takes a large update in one transaction.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type EtcdClient, loadClient, prefixEnd } from '../../src/etcd/_client.js';
import { Etcd } from '../../src/etcd/index.js';
import { useEtcd } from './etcd-server.js';

const prefix = 'txn-limit/';
const sessions: Etcd[] = [];
const clients: EtcdClient[] = [];
const teardown = async () => {
  for (const s of sessions.splice(0)) await s.close().catch(() => {});
  for (const c of clients.splice(0)) c.close();
};
const small = useEtcd({ extraArgs: ['--max-txn-ops', '16'], teardown });
const large = useEtcd({ extraArgs: ['--max-txn-ops', '1024'], teardown });

async function connect(endpoints: string[], maxTxnOps?: number): Promise<Etcd> {
  const s = await Etcd.connect({ endpoints, prefix, ...(maxTxnOps === undefined ? {} : { maxTxnOps }) });
  sessions.push(s);
  return s;
}

async function raw(endpoints: string[]): Promise<EtcdClient> {
  const c = await loadClient(endpoints, 2000);
  clients.push(c);
  return c;
}

let seq = 0;
const fresh = () => `t${++seq}`;
const ssh = (name: string) => ({ name, type: 'ssh' as const, host: `${name}.example` });
const root = (name: string) => `${prefix}registry/${name}/`;

/** The machine keys of a registry with their mod revisions. */
async function machineRevisions(client: EtcdClient, name: string): Promise<Map<string, bigint>> {
  const res = await client.range({ key: root(name), rangeEnd: prefixEnd(root(name)) });
  return new Map(
    res.kvs
      .filter((kv) => kv.key.startsWith(`${root(name)}machines/`))
      .map((kv) => [kv.key.slice(`${root(name)}machines/`.length), kv.modRevision]),
  );
}

const bigUpdate = (n: number) => (d: { add(m: ReturnType<typeof ssh>): void }) => {
  for (let i = 0; i < n; i++) d.add(ssh(`m${i}`));
};

test('--max-txn-ops 16: 300 concurrent add() all succeed, in arrival order, 15 at most per transaction', async (t) => {
  if (!small.ready(t)) return;
  const endpoints = small.cluster.endpoints();
  const name = fresh();
  const reg = await (await connect(endpoints, 16)).registry(name);
  const names = Array.from({ length: 300 }, (_, i) => `c${String(i).padStart(3, '0')}`);
  await Promise.all(names.map((n) => reg.add(ssh(n))));
  const mods = await machineRevisions(await raw(endpoints), name);
  assert.equal(mods.size, 300);
  const perTxn = new Map<bigint, number>();
  let last = 0n;
  for (const n of names) {
    const mod = mods.get(n)!;
    assert.ok(mod >= last, `${n} committed in arrival order`);
    last = mod;
    perTxn.set(mod, (perTxn.get(mod) ?? 0) + 1);
  }
  // 15 machine compares and the meta compare fill 16: at least 20 transactions.
  assert.ok(perTxn.size >= 20, `${perTxn.size} transactions`);
  assert.ok(perTxn.size < 300, 'the adds were still batched');
  for (const count of perTxn.values()) assert.ok(count <= 15, `${count} adds in one transaction`);
});

test('--max-txn-ops 16: an update() over the limit fails alone with ERR_ETCD_TXN_TOO_LARGE; removes count their epoch', async (t) => {
  if (!small.ready(t)) return;
  const endpoints = small.cluster.endpoints();
  const name = fresh();
  const reg = await (await connect(endpoints, 16)).registry(name);
  await assert.rejects(reg.update(bigUpdate(20)), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'ERR_ETCD_TXN_TOO_LARGE');
    assert.match(err.message, /21 operations/);
    assert.match(err.message, /\b16\b/);
    return true;
  });
  assert.equal((await machineRevisions(await raw(endpoints), name)).size, 0);
  // 15 puts and the batch id: exactly the limit.
  await reg.update(bigUpdate(15));
  assert.equal(reg.list().length, 16);
  // 15 deletes, the epoch and the batch id: one more than the limit.
  await assert.rejects(
    reg.update((d) => {
      for (let i = 0; i < 15; i++) d.remove(`m${i}`);
    }),
    { code: 'ERR_ETCD_TXN_TOO_LARGE', message: /17 operations/ },
  );
  await reg.update((d) => {
    for (let i = 0; i < 14; i++) d.remove(`m${i}`);
  });
  await reg.reload();
  assert.deepEqual(
    reg.list().map((m) => m.name),
    ['local', 'm14'],
  );
});

test('a cluster whose --max-txn-ops is below maxTxnOps refuses the transaction: still ERR_ETCD_TXN_TOO_LARGE', async (t) => {
  if (!small.ready(t)) return;
  const endpoints = small.cluster.endpoints();
  const name = fresh();
  const reg = await (await connect(endpoints, 1024)).registry(name);
  await assert.rejects(reg.update(bigUpdate(20)), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'ERR_ETCD_TXN_TOO_LARGE');
    assert.match(err.message, /refused/);
    assert.match(err.message, /--max-txn-ops/);
    return true;
  });
  await reg.add(ssh('small-enough'));
  assert.deepEqual([...(await machineRevisions(await raw(endpoints), name)).keys()], ['small-enough']);
});

test('--max-txn-ops 1024 and maxTxnOps 1024: an update() of 300 machines commits atomically, in one transaction', async (t) => {
  if (!large.ready(t)) return;
  const endpoints = large.cluster.endpoints();
  const name = fresh();
  const reg = await (await connect(endpoints, 1024)).registry(name);
  await reg.update(bigUpdate(300));
  assert.equal(reg.list().length, 301);
  const mods = await machineRevisions(await raw(endpoints), name);
  assert.equal(mods.size, 300);
  assert.equal(new Set(mods.values()).size, 1, 'every machine written at one revision');
  // The same cluster with the default option: townlock refuses before sending, and says what to do.
  const other = await (await connect(endpoints)).registry(fresh());
  await assert.rejects(other.update(bigUpdate(300)), {
    code: 'ERR_ETCD_TXN_TOO_LARGE',
    message: /301 operations.*128/s,
  });
});

test('the client refuses a transaction over maxTxnOps before sending it, counting as etcd does', async (t) => {
  if (!small.ready(t)) return;
  const client = await loadClient(small.cluster.endpoints(), 2000, 16);
  clients.push(client);
  const put = (i: number) => ({ type: 'put' as const, key: `${prefix}raw/${i}`, value: '' });
  const compare = (i: number) => ({
    key: `${prefix}raw/${i}`,
    target: 'mod' as const,
    op: '=' as const,
    value: 0n,
  });
  // Each list is checked on its own: 16 compares, 16 writes and 16 reads together pass.
  const ok = await client.txn({
    compare: Array.from({ length: 16 }, (_, i) => compare(i)),
    success: Array.from({ length: 16 }, (_, i) => put(i)),
    failure: Array.from({ length: 16 }, (_, i) => ({ type: 'range' as const, key: `${prefix}raw/${i}` })),
  });
  assert.equal(ok.succeeded, true);
  for (const request of [
    { compare: Array.from({ length: 17 }, (_, i) => compare(i + 100)), success: [], failure: [] },
    { compare: [], success: Array.from({ length: 17 }, (_, i) => put(i + 100)), failure: [] },
    { compare: [], success: [], failure: Array.from({ length: 17 }, (_, i) => put(i + 100)) },
  ]) {
    await assert.rejects(client.txn(request), { code: 'ERR_ETCD_TXN_TOO_LARGE', message: /17 operations/ });
  }
  const written = await client.range({ key: `${prefix}raw/`, rangeEnd: prefixEnd(`${prefix}raw/`) });
  assert.equal(written.kvs.length, 16, 'nothing of the refused transactions was applied');
});

test('maxTxnOps is checked like the other options (ERR_INVALID_OPTION)', async () => {
  const endpoints = ['127.0.0.1:1'];
  for (const maxTxnOps of [0, 2, 1.5, -128, Number.NaN, Number.POSITIVE_INFINITY, '128']) {
    await assert.rejects(Etcd.connect({ endpoints, maxTxnOps: maxTxnOps as never }), {
      code: 'ERR_INVALID_OPTION',
      message: /option maxTxnOps:/,
    });
  }
});
