/**
 * Work written as a generator that yields between pieces (parsing, encoding and scanning big registries),
 * run either at once or with an event-loop turn between pieces, so that no single turn blocks long.
 */

/** Runs `steps` to the end at once and returns its result. */
export function runAtOnce<T>(steps: Generator<void, T>): T {
  for (;;) {
    const step = steps.next();
    if (step.done) return step.value;
  }
}

/** Runs `steps` with an event-loop turn (setImmediate) after each piece, and returns its result. */
export async function runInPieces<T>(steps: Generator<void, T>): Promise<T> {
  for (;;) {
    const step = steps.next();
    if (step.done) return step.value;
    await new Promise((resolve) => setImmediate(resolve));
  }
}
