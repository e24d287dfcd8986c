/** Human output: aligned tables, optional colour, and the one-line error format. */
import type { CliContext, Output } from './context.js';
import { EXIT, errorText, exitCodeFor } from './errors.js';

/** Whether to colour `out`: only on a terminal, and never when NO_COLOR is set (no-color.org). */
export function useColor(out: Output, env: CliContext['env']): boolean {
  return Boolean(out.isTTY) && env.NO_COLOR === undefined;
}

/** Wraps text in an ANSI style when `on`. */
export function style(on: boolean, code: 'bold' | 'red' | 'green' | 'dim', text: string): string {
  if (!on) return text;
  const codes = { bold: [1, 22], red: [31, 39], green: [32, 39], dim: [2, 22] }[code];
  return `\u001b[${codes[0]}m${text}\u001b[${codes[1]}m`;
}

/** Renders rows as columns aligned on the widest cell, header first (bold on a colour terminal). */
export function table(header: string[], rows: string[][], color: boolean): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return `${[style(color, 'bold', line(header)), ...rows.map(line)].join('\n')}\n`;
}

/** Writes an aligned table to stdout, coloured only when stdout is a terminal and NO_COLOR is unset. */
export function printTable(ctx: CliContext, header: string[], rows: string[][]): void {
  ctx.stdout.write(table(header, rows, useColor(ctx.stdout, ctx.env)));
}

/** Writes `value` as one JSON document. */
export function printJson(out: Output, value: unknown): void {
  out.write(`${JSON.stringify(value, null, 2)}\n`);
}

/**
 * Writes one error line, `townlock: <message> [CODE]`, and returns the exit code for `err`. An internal
 * error (a bug) also gets its stack.
 */
export function printError(ctx: CliContext, err: unknown): number {
  const exit = exitCodeFor(err);
  const prefix = style(useColor(ctx.stderr, ctx.env), 'red', 'townlock:');
  if (exit === EXIT.internal) {
    ctx.stderr.write(`${prefix} internal error (a bug in townlock; please report it): ${errorText(err)}\n`);
    ctx.stderr.write(`${(err as Error)?.stack ?? String(err)}\n`);
  } else ctx.stderr.write(`${prefix} ${errorText(err)}\n`);
  return exit;
}
