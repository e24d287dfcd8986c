import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setLongTimeout } from './_long-timer.js';

test('a delay beyond 2^31 ms does not fire at once (Node would clamp it to 1 ms)', async () => {
  let fired = false;
  const warnings: string[] = [];
  const onWarning = (w: Error) => warnings.push(w.name);
  process.on('warning', onWarning);
  const timer = setLongTimeout(
    () => {
      fired = true;
    },
    2 ** 31 + 5_000,
  );
  await new Promise((resolve) => setTimeout(resolve, 20));
  timer.clear();
  process.off('warning', onWarning);
  assert.equal(fired, false);
  assert.deepEqual(warnings, []);
});

test('short delays fire; clear() cancels; Infinity never fires', async () => {
  const order: string[] = [];
  setLongTimeout(() => order.push('a'), 1);
  const b = setLongTimeout(() => order.push('b'), 2);
  b.clear();
  setLongTimeout(() => order.push('never'), Number.POSITIVE_INFINITY).clear();
  await new Promise((resolve) => setTimeout(resolve, 15));
  assert.deepEqual(order, ['a']);
});
