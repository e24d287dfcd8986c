/**
 * Timers for any delay. Node clamps a setTimeout delay of 2^31 ms (about 24.8 days) or more to 1 ms and
 * prints a warning, so a long timeout would fire at once; these chain shorter timers instead.
 */

/** The longest delay setTimeout honours, in ms. */
const MAX_DELAY = 2 ** 31 - 1;

/** A pending long timer. */
export interface LongTimer {
  /** Cancels the timer; idempotent. */
  clear(): void;
}

/** Calls `fn` once after `ms` milliseconds, however large `ms` is (Infinity: never). */
export function setLongTimeout(fn: () => void, ms: number): LongTimer {
  let timer: NodeJS.Timeout | undefined;
  const due = performance.now() + ms;
  const arm = () => {
    const left = due - performance.now();
    if (left <= MAX_DELAY) {
      timer = setTimeout(fn, Math.max(0, left));
    } else {
      timer = setTimeout(arm, MAX_DELAY);
    }
  };
  if (ms !== Number.POSITIVE_INFINITY) arm();
  return {
    clear: () => {
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
    },
  };
}
