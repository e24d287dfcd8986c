/**
 * How one unary etcd call is run across endpoints within its deadline (`budget` ms), independent of the
 * client library so that it can be tested with fake attempts.
 *
 * - One deadline for the whole call: past `budget` ms it rejects, with the last failure as `cause`.
 * - Idempotent calls are hedged: if an attempt has not answered after `hedgeAfter` ms, another starts on
 *   the next endpoint while the first stays in flight, and the first answer wins. When a leader dies, a
 *   follower silently drops the requests it forwarded to it until the election (1-2 s) ends; only a
 *   request sent after the election is answered, and waiting for the first one would take etcd's 7 s.
 * - A failed attempt moves calls to the next endpoint and, unless the failure is fatal, is retried at
 *   once; after a whole round of fast failures it pauses (25 ms doubling to 200 ms) instead of spinning.
 * - A call that is not idempotent runs one attempt at a time and is retried only when the failure proves
 *   that the request never left (`not-sent`); any other failure rejects, since it may have been applied.
 */

/** How a failed attempt may be retried: never, only if idempotent, or always (it was never sent). */
export type Failure = 'fatal' | 'transient' | 'not-sent';

/** Everything runCall needs to know about one call. */
export interface CallPlan<T> {
  /** The operation's name, for messages. */
  what: string;
  idempotent: boolean;
  /** The whole call's deadline, in ms from now. */
  budget: number;
  /** Hedging interval of idempotent calls, in ms. */
  hedgeAfter: number;
  /** How many endpoints there are. */
  endpoints: number;
  /** The endpoint calls currently go to. */
  pinned(): number;
  /** Moves calls off endpoint `index` (if they still go there). */
  unpin(index: number): void;
  /** Runs one attempt on endpoint `index`, to be abandoned at `deadline`. */
  attempt(index: number, deadline: Date): Promise<T>;
  classify(err: unknown): Failure;
  /** The error to reject with when the call cannot complete; `cause` is the last failure. */
  unavailable(detail: string, cause?: unknown): Error;
}

/** Runs a call as the module comment describes. */
export function runCall<T>(plan: CallPlan<T>): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const due = Date.now() + plan.budget;
    let settled = false;
    let lastError: unknown;
    let failures = 0;
    let next: NodeJS.Timeout | undefined;
    const finish = (settle: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(budget);
      clearTimeout(next);
      settle();
    };
    const budget = setTimeout(
      () =>
        finish(() => reject(plan.unavailable(`${plan.what}: no answer within ${plan.budget} ms`, lastError))),
      plan.budget,
    );
    const schedule = (ms: number, then: () => void = launch) => {
      clearTimeout(next);
      next = setTimeout(then, ms);
    };
    function launch(): void {
      if (settled) return;
      const index = plan.pinned();
      if (plan.idempotent) {
        // No answer yet: the endpoint may be stuck (or a dead leader swallowed the request); hedge.
        schedule(plan.hedgeAfter, () => {
          plan.unpin(index);
          launch();
        });
        next!.unref(); // the attempt in flight keeps the process alive, not the hedge
      }
      let outcome: Promise<T>;
      try {
        outcome = plan.attempt(index, new Date(due));
      } catch (err) {
        outcome = Promise.reject(err);
      }
      outcome.then(
        (value) => finish(() => resolve(value)),
        (err: unknown) => {
          if (settled) return;
          const failure = plan.classify(err);
          if (failure === 'fatal') return finish(() => reject(err));
          lastError = err;
          plan.unpin(index);
          if (failure === 'transient' && !plan.idempotent) {
            return finish(() =>
              reject(plan.unavailable(`${plan.what} failed and may or may not have been applied`, err)),
            );
          }
          failures++;
          const round = Math.floor(failures / plan.endpoints);
          schedule(failures % plan.endpoints === 0 ? Math.min(25 * 2 ** (round - 1), 200) : 0);
        },
      );
    }
    launch();
  });
}
