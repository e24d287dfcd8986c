/** `townlock log append|tail`: JSONL logs with JsonlLog's guarantees, from a shell. */
import fs from 'node:fs';
import { constants } from 'node:os';
import { resolve } from 'node:path';
import { JsonlLog, type TornLine } from '../../store/jsonl-log.js';
import { EXIT, InputError, UsageError } from '../errors.js';
import { printJsonLine, printWarning } from '../output.js';
import type { CommandRun } from '../spec.js';
import { parseValue } from './json.js';

export const append: CommandRun = async (args, ctx, input) => {
  const [file, ...texts] = args.positionals;
  if (file === undefined || texts.length === 0) {
    throw new UsageError(file === undefined ? 'missing FILE' : 'missing JSON', `usage: ${input.usage}`);
  }
  const entries = texts.map((t, i) => (args.values.string ? t : parseValue(t, `entry ${i + 1}`)));
  const log = await JsonlLog.open(resolve(ctx.cwd, file));
  await log.append(entries.length === 1 ? [entries[0]] : entries);
  return EXIT.ok;
};

export const tail: CommandRun = async (args, ctx, input) => {
  const [file, extra] = args.positionals;
  if (file === undefined) throw new UsageError('missing FILE', `usage: ${input.usage}`);
  if (extra !== undefined) throw new UsageError(`unexpected argument '${extra}'`, `usage: ${input.usage}`);
  const count = args.values.lines === undefined ? 10 : Number(args.values.lines);
  if (!Number.isSafeInteger(count) || count < 0) {
    throw new UsageError(`-n needs a whole number of entries, got ${JSON.stringify(args.values.lines)}`);
  }
  const abs = resolve(ctx.cwd, file);
  if (!args.values.follow && !fs.existsSync(abs)) {
    throw new InputError('', abs, Object.assign(new Error('no such file'), { code: 'ENOENT' }));
  }
  // With -f, a signal ends the follow cleanly from the start (also one that comes during the first pass).
  const stop = new AbortController();
  const unsubscribe = args.values.follow ? ctx.onSignal((signal) => stop.abort(signal)) : () => {};
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
    // The last COUNT entries: a ring over one pass of the file.
    const ring: unknown[] = [];
    let seen = 0;
    let end = 0;
    for await (const e of log.entries({ onTorn })) {
      if (count > 0) ring[seen % count] = e.value;
      seen++;
      end = e.end;
    }
    const kept = Math.min(seen, count);
    for (let i = seen - kept; i < seen; i++) printJsonLine(ctx.stdout, ring[i % count]);
    if (!args.values.follow || stop.signal.aborted) return exitOf(stop.signal);
    for await (const value of log.watch({ from: end, signal: stop.signal, onTorn }))
      printJsonLine(ctx.stdout, value);
    return exitOf(stop.signal);
  } finally {
    unsubscribe();
  }
};

/** 128+N after signal N ended the follow, else 0. */
function exitOf(signal: AbortSignal): number {
  const reason = signal.reason as NodeJS.Signals | undefined;
  return signal.aborted ? 128 + (constants.signals[reason!] ?? 15) : EXIT.ok;
}
