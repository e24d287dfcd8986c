/** `townlock log append|tail`: JSONL logs with JsonlLog's guarantees, from a shell. */

import fs from 'node:fs';
import { constants } from 'node:os';
import { JsonlLog, type TornLine } from '../../store/jsonl-log.js';
import { absolutePath } from '../args.js';
import { EXIT, UsageError } from '../errors.js';
import { printJsonLine, printWarning } from '../output.js';
import type { CommandRun } from '../spec.js';
import { requireInput } from './_input.js';
import { parseValue } from './json.js';

export const append: CommandRun = async (args, ctx, input) => {
  const [file, ...texts] = args.positionals;
  if (file === undefined || texts.length === 0) {
    throw new UsageError(file === undefined ? 'missing FILE' : 'missing JSON', `usage: ${input.usage}`);
  }
  const entries = texts.map((t, i) => (args.values.string ? t : parseValue(t, `entry ${i + 1}`)));
  const log = await JsonlLog.open(absolutePath(ctx, file));
  await log.append(entries.length === 1 ? [entries[0]] : entries);
  return EXIT.ok;
};

export const tail: CommandRun = async (args, ctx, input) => {
  const [file, extra] = args.positionals;
  if (file === undefined) throw new UsageError('missing FILE', `usage: ${input.usage}`);
  if (extra !== undefined) throw new UsageError(`unexpected argument '${extra}'`, `usage: ${input.usage}`);
  // -n COUNT: the last COUNT entries; -n +N: every entry from the Nth on (as tail(1) reads them).
  const lines = typeof args.values.lines === 'string' ? args.values.lines : '10';
  const fromStart = lines.startsWith('+');
  const count = Number(fromStart ? lines.slice(1) : lines);
  if (!/^\+?\d+$/.test(lines) || !Number.isSafeInteger(count)) {
    throw new UsageError(
      `-n needs a whole number of entries, got ${JSON.stringify(lines)}`,
      "write e.g. '-n 20' (the last 20) or '-n +1' (from the first)",
    );
  }
  const abs = absolutePath(ctx, file);
  if (!args.values.follow) requireInput(abs);
  // With -f, a signal ends the follow cleanly from the start (also one that comes during the first pass).
  const stop = new AbortController();
  const unsubscribeSignals = args.values.follow ? ctx.onSignal((signal) => stop.abort(signal)) : () => {};
  // A reader that went away (`| head -1`) ends the follow, as it ends tail(1).
  const unsubscribeClosed =
    (args.values.follow && ctx.stdout.onClosed?.(() => stop.abort('closed'))) || (() => {});
  const unsubscribe = () => {
    unsubscribeSignals();
    unsubscribeClosed();
  };
  try {
    const log = await JsonlLog.open(abs);
    // Each torn line is reported once, although the follow may read a torn last line again.
    const reported = new Set<number>();
    const onTorn = (t: TornLine) => {
      if (reported.has(t.offset)) return;
      reported.add(t.offset);
      printWarning(
        ctx,
        `${file}: torn ${t.tail ? 'last line' : 'line'} at byte ${t.offset} skipped: not a whole JSON entry (a crash mid-append, or not JSON)`,
      );
    };
    let end: number;
    if (fromStart) {
      let n = 0;
      end = 0;
      for await (const e of log.entries({ onTorn })) {
        if (++n >= count) printJsonLine(ctx.stdout, e.value);
        end = e.end;
      }
    } else {
      const last = await lastEntries(log, abs, count, onTorn);
      for (const value of last.values) printJsonLine(ctx.stdout, value);
      end = last.end;
    }
    if (!args.values.follow || stop.signal.aborted) return exitOf(stop.signal);
    for await (const value of log.watch({ from: end, signal: stop.signal, onTorn }))
      printJsonLine(ctx.stdout, value);
    return exitOf(stop.signal);
  } finally {
    unsubscribe();
  }
};

/**
 * The last `count` entries of the log and the offset after them, read from near the end of the file:
 * `tail -n 1` of a 100 MB log reads a few KB, not the whole log. Starts `count` lines from the end and
 * goes further back while torn lines there leave fewer than `count` entries.
 */
async function lastEntries(
  log: JsonlLog<unknown>,
  path: string,
  count: number,
  onTorn: (t: TornLine) => void,
): Promise<{ values: unknown[]; end: number }> {
  const size = fs.statSync(path, { throwIfNoEntry: false })?.size;
  if (size === undefined) return { values: [], end: 0 }; // -f on a log that does not exist yet
  if (count === 0) return { values: [], end: lineStartBefore(path, size, 0) };

  for (let want = count; ; want *= 2) {
    const from = lineStartBefore(path, size, want);
    const values: unknown[] = [];
    let end = from;
    const torn: TornLine[] = [];
    for await (const e of log.entries({ from, onTorn: (t) => torn.push(t) })) {
      values.push(e.value);
      end = e.end;
    }
    if (values.length >= count || from === 0) {
      for (const t of torn) onTorn(t);
      return { values: values.slice(-count), end };
    }
  }
}

/**
 * The offset where the last `lines` lines of the first `size` bytes start (0 when there are fewer): the
 * byte after the newline that precedes them. An unterminated last line (a torn tail) counts as a line;
 * for `lines` 0, the offset after the last newline (`size` when the data ends with one).
 */
function lineStartBefore(path: string, size: number, lines: number): number {
  const fd = fs.openSync(path, 'r');
  try {
    const chunk = Buffer.alloc(64 * 1024);
    // The answer is just after the Kth newline from the end. Data that ends with a newline: K = lines + 1
    // (that last newline ends the last line). An unterminated last line is a line of its own: K = lines,
    // but at least 1, so that `lines` 0 stops before it.
    let k = -1;
    for (let pos = size; pos > 0; ) {
      const length = Math.min(chunk.length, pos);
      pos -= length;
      fs.readSync(fd, chunk, 0, length, pos);
      for (let i = length - 1; i >= 0; i--) {
        if (k < 0) k = chunk[i] === 0x0a ? lines + 1 : Math.max(lines, 1);
        if (chunk[i] === 0x0a && --k === 0) return pos + i + 1;
      }
    }
    return 0;
  } finally {
    fs.closeSync(fd);
  }
}

/** 128+N after signal N ended the follow, else 0. */
function exitOf(signal: AbortSignal): number {
  const reason = signal.reason as NodeJS.Signals | 'closed' | undefined;
  if (!signal.aborted || reason === 'closed') return EXIT.ok;
  return 128 + (constants.signals[reason!] ?? 15);
}
