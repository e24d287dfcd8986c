/**
 * Text from files, the registry, other processes and arguments is shown as escapes, never as control
 * characters: an escape sequence in a machine name or a lock file must not clear the screen, retitle
 * the terminal, forge a table row or reorder a line. Every human-readable line the CLI prints goes
 * through {@link sanitize} (output.ts); JSON output goes through {@link jsonText}.
 */

// C0 (newline included: the CLI adds its own), DEL, C1, the line and paragraph separators, the bidi marks
// (ALM, LRM, RLM), and the bidirectional overrides and isolates.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
// JSON.stringify escapes C0 only; these are valid in JSON strings but not harmless on a terminal (C1,
// DEL, bidi) or in JavaScript source older than ES2019 (U+2028, U+2029).
const JSON_UNSAFE = /[\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** `text` with every control or bidi-override character shown as `\xHH` (or `\uHHHH` above U+00FF). */
export function sanitize(text: string): string {
  return text.replace(UNSAFE, (c) => {
    const code = c.charCodeAt(0);
    return code <= 0xff
      ? `\\x${code.toString(16).padStart(2, '0')}`
      : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}

/**
 * `value` as JSON (indented by `indent` spaces; 0 for one line) whose text contains no control or
 * bidi-override character.
 */
export function jsonText(value: unknown, indent = 2): string {
  return JSON.stringify(value, null, indent || undefined).replace(
    JSON_UNSAFE,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}
