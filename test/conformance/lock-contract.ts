/**
 * The behaviour every `Lock` implementation shares (FileLock, EtcdLock): one suite, run per backend by
 * conformance.test.ts. Two handles made by `make` on the same name exclude each other as two processes
 * would. Nothing here nests locks on one name: FileLock re-enters there, EtcdLock does not.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Lock, LockType } from '../../src/lock.js';

/** Options every backend takes, with FileLock's meaning. */
export interface ContractOptions {
  type?: LockType;
  timeout?: number;
  signal?: AbortSignal;
}

/** Makes a handle on lock `name` (a fresh name per test) of the backend under test. */
export type MakeLock = (name: string, options?: ContractOptions) => Lock;

/** Gives a wrongly granted lock the chance to show up; not used to wait for anything. */
const WINDOW_MS = 50;

/** Registers the contract tests for one backend; `ready` skips them when the backend is unavailable. */
export function lockContract(
  label: string,
  make: () => MakeLock,
  ready: (t: { skip: (r: string) => void }) => boolean,
) {
  let seq = 0;
  const name = () => `contract-${++seq}`;

  test(`${label}: tryLock is false while another handle holds, true once it unlocks`, async (t) => {
    if (!ready(t)) return;
    const n = name();
    const a = make()(n);
    const b = make()(n);
    assert.equal(await a.tryLock(), true);
    assert.equal(a.isLocked, true);
    assert.equal(await b.tryLock(), false);
    assert.equal(b.isLocked, false);
    await a.unlock();
    assert.equal(await b.tryLock(), true);
    await b.unlock();
  });

  test(`${label}: lock() waits for the holder and gets the lock when it unlocks`, async (t) => {
    if (!ready(t)) return;
    const n = name();
    const a = make()(n);
    const b = make()(n, { timeout: 10_000 });
    await a.lock();
    let got = false;
    const waiting = b.lock().then(() => {
      got = true;
    });
    await sleep(WINDOW_MS);
    assert.equal(got, false, 'b must not hold while a does');
    await a.unlock();
    await waiting;
    assert.equal(b.isLocked, true);
    await b.unlock();
  });

  test(`${label}: shared handles hold together; an exclusive one waits for all of them`, async (t) => {
    if (!ready(t)) return;
    const n = name();
    const r1 = make()(n, { type: 'shared' });
    const r2 = make()(n, { type: 'shared' });
    const w = make()(n, { type: 'exclusive', timeout: 10_000 });
    await r1.lock();
    assert.equal(await r2.tryLock(), true);
    assert.equal(await w.tryLock(), false);
    let got = false;
    const waiting = w.lock().then(() => {
      got = true;
    });
    await r1.unlock();
    await sleep(WINDOW_MS);
    assert.equal(got, false, 'the writer must wait for the second reader');
    await r2.unlock();
    await waiting;
    assert.equal(await make()(n, { type: 'shared' }).tryLock(), false, 'a reader must wait for the writer');
    await w.unlock();
  });

  test(`${label}: a timed-out wait rejects with ERR_LOCK_TIMEOUT after about timeout ms`, async (t) => {
    if (!ready(t)) return;
    const n = name();
    const a = make()(n);
    await a.lock();
    const b = make()(n, { timeout: 150 });
    const start = performance.now();
    await assert.rejects(b.lock(), { code: 'ERR_LOCK_TIMEOUT' });
    const waited = performance.now() - start;
    assert.ok(waited >= 145 && waited < 2000, `waited ${waited} ms`);
    assert.equal(b.isLocked, false);
    await a.unlock();
    assert.equal(await b.tryLock(), true, 'the timed-out handle can lock later');
    await b.unlock();
  });

  test(`${label}: a negative timeout makes one attempt`, async (t) => {
    if (!ready(t)) return;
    const n = name();
    const a = make()(n);
    await a.lock();
    const start = performance.now();
    await assert.rejects(make()(n, { timeout: -1 }).lock(), { code: 'ERR_LOCK_TIMEOUT' });
    assert.ok(performance.now() - start < 1000);
    await a.unlock();
    const c = make()(n, { timeout: -1 });
    await c.lock();
    await c.unlock();
  });

  test(`${label}: an abort rejects the wait with ERR_LOCK_ABORTED and the reason as cause`, async (t) => {
    if (!ready(t)) return;
    const n = name();
    const a = make()(n);
    await a.lock();
    const ac = new AbortController();
    const b = make()(n, { signal: ac.signal, timeout: 0 });
    const waiting = b.lock();
    setTimeout(() => ac.abort(new Error('changed my mind')), 30);
    await assert.rejects(waiting, (err: Error & { code?: string }) => {
      assert.equal(err.code, 'ERR_LOCK_ABORTED');
      assert.equal((err.cause as Error).message, 'changed my mind');
      return true;
    });
    assert.equal(b.isLocked, false);
    await assert.rejects(b.lock(), { code: 'ERR_LOCK_ABORTED' }, 'an aborted signal fails at once');
    await a.unlock();
  });

  test(`${label}: lock() while holding or acquiring fails with ERR_ALREADY_LOCKED; unlock() unheld with ERR_NOT_LOCKED`, async (t) => {
    if (!ready(t)) return;
    const n = name();
    const a = make()(n);
    await assert.rejects(a.unlock(), { code: 'ERR_NOT_LOCKED' });
    await a.lock();
    await assert.rejects(a.lock(), { code: 'ERR_ALREADY_LOCKED' });
    const b = make()(n, { timeout: 10_000 });
    const waiting = b.lock();
    await assert.rejects(b.lock(), { code: 'ERR_ALREADY_LOCKED' });
    await a.unlock();
    await waiting;
    await b.unlock();
    await assert.rejects(b.unlock(), { code: 'ERR_NOT_LOCKED' });
  });

  test(`${label}: withLock returns fn's result and always unlocks`, async (t) => {
    if (!ready(t)) return;
    const n = name();
    const a = make()(n);
    assert.equal(await a.withLock(() => (a.isLocked ? 42 : -1)), 42);
    assert.equal(a.isLocked, false);
    await assert.rejects(
      a.withLock(async () => {
        throw new Error('boom');
      }),
      /boom/,
    );
    assert.equal(a.isLocked, false);
    const b = make()(n);
    assert.equal(await b.tryLock(), true, 'released after the throw');
    await b.unlock();
  });

  test(`${label}: [Symbol.asyncDispose] unlocks and does nothing when not locked`, async (t) => {
    if (!ready(t)) return;
    const n = name();
    const a = make()(n);
    await a[Symbol.asyncDispose]();
    await a.lock();
    await a[Symbol.asyncDispose]();
    assert.equal(a.isLocked, false);
    await a[Symbol.asyncDispose]();
    const b = make()(n);
    assert.equal(await b.tryLock(), true);
    await b.unlock();
  });
}
