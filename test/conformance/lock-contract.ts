/**
 * The behaviour every `Lock` implementation shares (FileLock, EtcdLock): one suite, run per backend by
 * lock.test.ts. Two handles made by `make()` on the same name exclude each other as two processes would;
 * handles of one `make()` taken inside a `withLock` of the same name re-enter it (re-entrancy is scoped
 * to a live hold, as src/filelock/reentrancy.test.ts shows in more detail for FileLock).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep, setImmediate as yieldTurn } from 'node:timers/promises';
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

  reentrancy(label, make, ready, name);
}

/** Yields to the event loop a few times: long enough for a wrongly granted nested lock to show itself. */
const turns = async (n = 5) => {
  for (let i = 0; i < n; i++) await yieldTurn();
};

/** Records enter/exit of named sections and the largest number inside at once. */
function sections() {
  const events: string[] = [];
  let inside = 0;
  let max = 0;
  const run = (label: string) => async () => {
    max = Math.max(max, ++inside);
    events.push(`${label} in`);
    await turns(3);
    events.push(`${label} out`);
    inside--;
  };
  return { events, run, max: () => max };
}

/** Re-entrancy scoped to a live hold: the tests of src/filelock/reentrancy.test.ts that every lock shares. */
function reentrancy(
  label: string,
  make: () => MakeLock,
  ready: (t: { skip: (r: string) => void }) => boolean,
  name: () => string,
) {
  const write = (m: MakeLock, n: string, fn: () => unknown) => m(n, { timeout: 10_000 }).withLock(fn);
  const read = (m: MakeLock, n: string, fn: () => unknown) =>
    m(n, { type: 'shared', timeout: 10_000 }).withLock(fn);

  test(`${label}: withLock nested on the same name re-enters instead of waiting for itself`, async (t) => {
    if (!ready(t)) return;
    const [m, n] = [make(), name()];
    const inner = await write(m, n, () => write(m, n, () => 'inner'));
    assert.equal(inner, 'inner');
    const after = make()(n);
    assert.equal(await after.tryLock(), true, 'released when the outer hold ends');
    await after.unlock();
  });

  test(`${label}: siblings under Promise.all inside an exclusive hold take turns`, async (t) => {
    if (!ready(t)) return;
    const [m, n, s] = [make(), name(), sections()];
    await write(m, n, () =>
      Promise.all([write(m, n, s.run('a')), write(m, n, s.run('b')), write(m, n, s.run('c'))]),
    );
    assert.equal(s.max(), 1, s.events.join(', '));
    assert.deepEqual(s.events, ['a in', 'a out', 'b in', 'b out', 'c in', 'c out']);
  });

  test(`${label}: nested holds nest further: grandchildren take turns under their own parent`, async (t) => {
    if (!ready(t)) return;
    const [m, n, s] = [make(), name(), sections()];
    await write(m, n, () =>
      write(m, n, () => Promise.all([write(m, n, s.run('x')), write(m, n, s.run('y'))])),
    );
    assert.equal(s.max(), 1);
  });

  test(`${label}: shared children of a hold overlap; an exclusive child waits for them`, async (t) => {
    if (!ready(t)) return;
    const [m, n, s] = [make(), name(), sections()];
    await write(m, n, () =>
      Promise.all([read(m, n, s.run('r1')), read(m, n, s.run('r2')), write(m, n, s.run('w'))]),
    );
    assert.equal(s.max(), 2);
    assert.deepEqual(s.events.slice(-2), ['w in', 'w out']);
    const r = sections();
    await read(m, n, () => Promise.all([read(m, n, r.run('a')), read(m, n, r.run('b'))]));
    assert.equal(r.max(), 2);
  });

  test(`${label}: an exclusive lock inside a shared hold fails at once with ERR_LOCK_UPGRADE`, async (t) => {
    if (!ready(t)) return;
    const [m, n] = [make(), name()];
    await read(m, n, async () => {
      await assert.rejects(
        write(m, n, () => {}),
        { code: 'ERR_LOCK_UPGRADE' },
      );
      await write(m, name(), () => {}); // another name is unaffected
    });
  });

  test(`${label}: a timer started inside an earlier hold of a reused handle does not re-enter a later hold`, async (t) => {
    if (!ready(t)) return;
    const [m, n] = [make(), name()];
    const lock = m(n, { timeout: 10_000 });
    const events: string[] = [];
    let fire!: () => void;
    const timer = new Promise<void>((resolve) => {
      fire = resolve;
    });
    let late!: Promise<unknown>;
    await lock.withLock(() => {
      // Runs in the first hold's async context, but only once a second hold of the same handle is active.
      late = timer.then(() => write(m, n, () => events.push('timer')));
    });
    await lock.withLock(async () => {
      events.push('second in');
      fire();
      await turns();
      events.push('second out');
    });
    await late;
    assert.deepEqual(events, ['second in', 'second out', 'timer']);
  });

  test(`${label}: a nested lock() outliving the outer hold keeps the lock until it unlocks`, async (t) => {
    if (!ready(t)) return;
    const [m, n] = [make(), name()];
    let inner!: Lock;
    const outer = m(n);
    await outer.withLock(async () => {
      inner = m(n);
      await inner.lock();
    });
    assert.equal(outer.isLocked, false);
    assert.equal(inner.isLocked, true);
    assert.equal(await m(n).tryLock(), false, 'a handle outside the hold must not get it');
    assert.equal(await make()(n).tryLock(), false, 'nor may another participant');
    await inner.unlock();
    const after = make()(n);
    assert.equal(await after.tryLock(), true);
    await after.unlock();
  });

  test(`${label}: a nested request still queued when the outer hold ends is granted before the lock goes`, async (t) => {
    if (!ready(t)) return;
    const [m, n] = [make(), name()];
    const gate = () => {
      let open!: () => void;
      const opened = new Promise<void>((resolve) => {
        open = resolve;
      });
      return { open, opened };
    };
    const [first, secondIn, second] = [gate(), gate(), gate()];
    let children!: Promise<unknown>;
    await write(m, n, () => {
      children = Promise.all([
        write(m, n, () => first.opened),
        write(m, n, () => {
          secondIn.open();
          return second.opened;
        }),
      ]);
    });
    // The outer callback returned; the first child still holds and the second waits behind it.
    first.open();
    await secondIn.opened;
    // Checked from here, outside every hold (a handle made inside the hold would re-enter it).
    assert.equal(await make()(n).tryLock(), false, 'the second child runs while the lock is free');
    second.open();
    await children;
    const after = make()(n);
    assert.equal(await after.tryLock(), true);
    await after.unlock();
  });

  test(`${label}: a context that outlives every hold takes the lock afresh`, async (t) => {
    if (!ready(t)) return;
    const [m, n] = [make(), name()];
    let go!: () => void;
    const gate = new Promise<void>((resolve) => {
      go = resolve;
    });
    let later!: Promise<boolean>;
    await write(m, n, () => {
      later = gate.then(() => m(n, { timeout: -1 }).tryLock());
    });
    const other = m(n);
    await other.lock();
    go();
    assert.equal(await later, false, 'must be busy: another handle holds the lock now');
    await other.unlock();
  });
}
