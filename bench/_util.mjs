// Shared by the benchmarks: timing helpers, percentiles, and the raw koffi flock binding used as a floor.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import koffi from 'koffi';

/** A fresh temporary directory for one benchmark. */
export const scratch = (name) => mkdtempSync(join(tmpdir(), `townlock-bench-${name}-`));

/** flock(2) straight from libc, for the "raw" floor. */
export const libc = koffi.load(process.platform === 'darwin' ? 'libSystem.B.dylib' : 'libc.so.6');
export const flock = libc.func('int flock(int fd, int operation)');
export const LOCK_EX = 2;
export const LOCK_NB = 4;
export const LOCK_UN = 8;

/** Runs `fn` `n` times (after a warm-up) and returns microseconds per call. */
export async function perOp(n, fn) {
  for (let i = 0; i < Math.min(1000, n / 10); i++) await fn(i);
  const start = performance.now();
  for (let i = 0; i < n; i++) await fn(i);
  return ((performance.now() - start) * 1000) / n;
}

/**
 * Measures several implementations fairly on a noisy machine: `rounds` interleaved rounds of `n` calls
 * each (after a warm-up), reporting each one's median microseconds per call.
 */
export async function compare(cases, { rounds = 7 } = {}) {
  const samples = new Map(cases.map((c) => [c.name, []]));
  for (const c of cases) await perOp(c.n, c.fn);
  for (let r = 0; r < rounds; r++) {
    for (const c of cases) samples.get(c.name).push(await perOp(c.n, c.fn));
  }
  return new Map([...samples].map(([name, v]) => [name, percentile(v, 50)]));
}

/** The p-th percentile (0-100) of numbers. */
export function percentile(values, p) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/** Formats a number with `digits` decimals. */
export const fmt = (n, digits = 2) => (Number.isFinite(n) ? n.toFixed(digits) : String(n));

/** Prints a markdown table. */
export function printTable(header, rows) {
  console.log(`| ${header.join(' | ')} |`);
  console.log(`|${header.map(() => '---').join('|')}|`);
  for (const r of rows) console.log(`| ${r.join(' | ')} |`);
}

/** Absolute high-resolution time in ms, comparable across processes on one machine. */
export const now = () => performance.timeOrigin + performance.now();
