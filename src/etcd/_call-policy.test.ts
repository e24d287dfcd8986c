import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type CallPlan, type Failure, runCall } from './_call-policy.js';

/** A failure carrying its class, for the fake classify. */
class Fake extends Error {
  constructor(readonly failure: Failure) {
    super(failure);
  }
}

/** A plan over `endpoints` fake endpoints whose attempts are answered by `answer(index, n)`. */
function plan(
  answer: (index: number, n: number) => Promise<string>,
  overrides: Partial<CallPlan<string>> = {},
): CallPlan<string> & { attempts: number[] } {
  let pinned = 0;
  const attempts: number[] = [];
  const endpoints = overrides.endpoints ?? 3;
  return {
    what: 'op',
    idempotent: true,
    budget: 400,
    hedgeAfter: 100,
    endpoints,
    pinned: () => pinned,
    unpin: (i) => {
      if (pinned === i) pinned = (i + 1) % endpoints;
    },
    attempt: (index) => {
      attempts.push(index);
      return answer(index, attempts.length);
    },
    classify: (err) => (err instanceof Fake ? err.failure : 'fatal'),
    unavailable: (detail, cause) => Object.assign(new Error(detail), { code: 'UNAVAILABLE', cause }),
    attempts,
    ...overrides,
  };
}

const never = () => new Promise<string>(() => {});

test('the first answer resolves the call', async () => {
  const p = plan(async (i) => `from ${i}`);
  assert.equal(await runCall(p), 'from 0');
  assert.deepEqual(p.attempts, [0]);
});

test('a fatal failure rejects at once, unchanged', async () => {
  const boom = new Error('bad request');
  const p = plan(async () => {
    throw boom;
  });
  await assert.rejects(runCall(p), (err) => err === boom);
  assert.deepEqual(p.attempts, [0]);
});

test('a failure that proves the request never left is retried on the next endpoint, even for a write', async () => {
  const p = plan(
    async (i) => {
      if (i === 0) throw new Fake('not-sent');
      return `from ${i}`;
    },
    { idempotent: false },
  );
  assert.equal(await runCall(p), 'from 1');
  assert.deepEqual(p.attempts, [0, 1]);
});

test('a write whose outcome is unknown is not resent', async () => {
  const p = plan(
    async () => {
      throw new Fake('transient');
    },
    { idempotent: false },
  );
  await assert.rejects(runCall(p), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'UNAVAILABLE');
    assert.match(err.message, /may or may not have been applied/);
    return true;
  });
  assert.deepEqual(p.attempts, [0]);
});

test('an idempotent call is resent after a transient failure', async () => {
  const p = plan(async (i, n) => {
    if (n === 1) throw new Fake('transient');
    return `from ${i}`;
  });
  assert.equal(await runCall(p), 'from 1');
});

test('an idempotent call that hangs is hedged on the next endpoint, and the first answer wins', async () => {
  const start = performance.now();
  const p = plan(async (i) => (i === 0 ? never() : `from ${i}`));
  assert.equal(await runCall(p), 'from 1');
  const took = performance.now() - start;
  assert.ok(took >= 95 && took < 300, `took ${took} ms`);
  assert.deepEqual(p.attempts, [0, 1]);
});

test('a write that hangs is not hedged', async () => {
  const p = plan(never, { idempotent: false, budget: 250 });
  await assert.rejects(runCall(p), { code: 'UNAVAILABLE' });
  assert.deepEqual(p.attempts, [0]);
});

test('past the budget the call rejects, naming the last failure as cause', async () => {
  const start = performance.now();
  const last = new Fake('transient');
  const p = plan(async (_i, n) => (n === 1 ? Promise.reject(last) : never()));
  await assert.rejects(runCall(p), (err: Error & { code?: string; cause?: unknown }) => {
    assert.equal(err.code, 'UNAVAILABLE');
    assert.match(err.message, /no answer within 400 ms/);
    assert.equal(err.cause, last);
    return true;
  });
  const took = performance.now() - start;
  assert.ok(took >= 395 && took < 600, `took ${took} ms`);
});

test('endpoints that fail fast are retried in rounds with pauses, not in a busy loop', async () => {
  const p = plan(
    async () => {
      throw new Fake('not-sent');
    },
    { budget: 500 },
  );
  await assert.rejects(runCall(p), { code: 'UNAVAILABLE' });
  // Pauses of 25, 50, 100, 200 ms after each round of 3: about 5 rounds fit in 500 ms.
  assert.ok(p.attempts.length >= 9 && p.attempts.length <= 18, `${p.attempts.length} attempts`);
});
