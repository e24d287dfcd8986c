/**
 * Waiting primitives for lock.ts: sleep until a timer, a file change or an abort, leaving no timer,
 * listener or watcher behind however the wait ends.
 */
import { type FSWatcher, watch } from 'node:fs';
import { setLongTimeout } from '../_long-timer.js';
import type { FsPath } from './_target.js';
import { LockAbortedError } from './errors.js';

/** Watches the lock file for the releaser's touch; undefined if watching is impossible (polling still works). */
export function watchQuietly(lockPath: FsPath): FSWatcher | undefined {
  try {
    const watcher = watch(lockPath, { persistent: false });
    watcher.on('error', () => {});
    return watcher;
  } catch {
    return undefined;
  }
}

/** Closes a watcher at the next turn of the event loop (it no longer delivers to anyone meanwhile). */
export function closeSoon(watcher: FSWatcher): void {
  watcher.removeAllListeners('change');
  setImmediate(() => watcher.close());
}

/** Sleeps up to `ms`, ending early (true) if a watched file changes. */
export function pause(
  ms: number,
  watchers: FSWatcher | undefined | readonly (FSWatcher | undefined)[],
  signal: AbortSignal | undefined,
  lockPath: string,
) {
  const list = Array.isArray(watchers) ? watchers : [watchers];
  const onChange = (wake: () => void) => {
    for (const w of list) w?.on('change', wake);
    return () => {
      for (const w of list) w?.off('change', wake);
    };
  };
  return waitEvent(onChange, ms, signal, lockPath);
}

/**
 * Waits until `subscribe`'s wake callback fires (true) or `ms` passes (false); rejects with
 * LockAbortedError when `signal` aborts. Every timer and listener is removed however it ends.
 */
export function waitEvent(
  subscribe: (wake: () => void) => () => void,
  ms: number,
  signal: AbortSignal | undefined,
  lockPath: string,
): Promise<boolean> {
  return new Promise<boolean>((resolvePromise, reject) => {
    let settled = false;
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      timer?.clear();
      unsubscribe();
      signal?.removeEventListener('abort', onAbort);
      fn();
    };
    const onAbort = () => settle(() => reject(new LockAbortedError(lockPath, signal?.reason)));
    // A long timer: a timeout of 2^31 ms or more must not fire at once (Node clamps such delays to 1 ms).
    const timer = Number.isFinite(ms)
      ? setLongTimeout(() => settle(() => resolvePromise(false)), ms)
      : undefined;
    const unsubscribe = subscribe(() => settle(() => resolvePromise(true)));
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
  });
}
