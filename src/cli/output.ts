/**
 * Human output: aligned tables, optional colour, the one-line error and warning formats. Every line
 * commands print goes through here and is sanitized (sanitize.ts): no control character from data ever
 * reaches the terminal. The only other writes are the raw output of a command `machine exec` ran.
 */
import type { CliContext, Output } from './context.js';
import { EXIT, errorText, exitCodeFor } from './errors.js';
import { jsonText, sanitize } from './sanitize.js';

/** Whether to colour `out`: only on a terminal, and never when NO_COLOR is set and not empty (no-color.org). */
export function useColor(out: Output, env: CliContext['env']): boolean {
  return Boolean(out.isTTY) && !env.NO_COLOR;
}

/** Wraps text in an ANSI style when `on`. */
export function style(on: boolean, code: 'bold' | 'red' | 'green' | 'dim', text: string): string {
  if (!on) return text;
  const codes = { bold: [1, 22], red: [31, 39], green: [32, 39], dim: [2, 22] }[code];
  return `\u001b[${codes[0]}m${text}\u001b[${codes[1]}m`;
}

/** Renders rows as columns aligned on the widest cell, header first (bold on a colour terminal). */
export function table(header: string[], cells: string[][], color: boolean): string {
  const rows = cells.map((r) => r.map(sanitize));
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
  out.write(`${jsonText(value)}\n`);
}

/** Writes `value` as JSON on one line (a JSONL entry). */
export function printJsonLine(out: Output, value: unknown): void {
  out.write(`${jsonText(value, 0)}\n`);
}

/**
 * Writes a document exactly as it is (a registry file's bytes, for redirecting into a file) and a newline;
 * on a terminal, sanitized line by line like any other output (JSON text has no raw C0, but may have
 * C1 or bidi characters, which a terminal must not receive).
 */
export function printDocument(out: Output, text: string): void {
  if (out.isTTY) printLines(out, ...text.split('\n'));
  else out.write(`${text}\n`);
}

/** Writes lines of text to `out`, each sanitized (a newline inside a value is shown as \x0a). */
export function printLines(out: Output, ...lines: string[]): void {
  out.write(lines.map((l) => `${sanitize(l)}\n`).join(''));
}

/** Writes one warning line, `townlock: warning: <text>`, to stderr. */
export function printWarning(ctx: CliContext, text: string): void {
  ctx.stderr.write(
    `${style(useColor(ctx.stderr, ctx.env), 'red', 'townlock:')} warning: ${sanitize(text)}\n`,
  );
}

/**
 * Writes one error line, `townlock: <message> [CODE]`, and returns the exit code for `err`. An internal
 * error (a bug) also gets its stack.
 */
export function printError(ctx: CliContext, err: unknown): number {
  const exit = exitCodeFor(err);
  const prefix = style(useColor(ctx.stderr, ctx.env), 'red', 'townlock:');
  if (exit === EXIT.internal) {
    const text = `internal error (a bug in townlock; please report it): ${sanitize(errorText(err))}`;
    const stack = ((err as Error)?.stack ?? String(err)).split('\n').map(sanitize);
    ctx.stderr.write(`${prefix} ${text}\n${stack.join('\n')}\n`);
  } else ctx.stderr.write(`${prefix} ${sanitize(errorText(err))}\n`);
  return exit;
}
