/**
 * JSON Lines, as the log and the queue read them: one JSON value per line, each line ending in "\n"
 * ("\r\n" is accepted; blank lines are skipped). A line that is not valid JSON is never returned as data:
 * it is reported with its byte offset.
 * A last line without its "\n" differs between the two: the log never yields it, even if it parses (an
 * append still being written, or, if it stays so under the shared lock, a torn tail; see jsonl-log.ts);
 * the queue file is only ever replaced whole, so there it is a task if it parses and corrupt otherwise.
 */

/** One line of a JSONL file. */
export interface Line {
  /** Byte offset of the line's first byte. */
  offset: number;
  /** Byte offset just past the line (past its "\n" when it has one). */
  end: number;
  /** The line's text, without the "\n" (and without a "\r" before it). */
  text: string;
  /** False for a last line that has no "\n". */
  terminated: boolean;
}

/** Splits `bytes` (starting at file offset `base`) into lines; blank lines are skipped. */
export function splitLines(bytes: Buffer, base = 0): Line[] {
  const lines: Line[] = [];
  let start = 0;
  while (start < bytes.length) {
    const nl = bytes.indexOf(0x0a, start);
    const terminated = nl >= 0;
    const stop = terminated ? nl : bytes.length;
    const end = terminated ? nl + 1 : bytes.length;
    let textEnd = stop;
    if (textEnd > start && bytes[textEnd - 1] === 0x0d) textEnd--;
    const text = bytes.toString('utf8', start, textEnd);
    if (text.trim() !== '') lines.push({ offset: base + start, end: base + end, text, terminated });
    start = end;
  }
  return lines;
}

/** Parses one line's JSON, or returns undefined when it is not valid JSON. */
export function parseLine(text: string): { value: unknown } | undefined {
  try {
    return { value: JSON.parse(text) };
  } catch {
    return undefined;
  }
}

/** The JSONL text of one value; throws TypeError for what JSON cannot hold (undefined, BigInt, cycles). */
export function lineOf(value: unknown): string {
  return jsonText(value);
}

/**
 * JSON.stringify(value), or a TypeError that says plainly what is wrong: a value JSON cannot hold, or a
 * cyclic value (V8's message, "Converting circular structure to JSON", is kept after ours).
 */
export function jsonText(value: unknown, space?: number): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value, null, space);
  } catch (err) {
    if (err instanceof TypeError && /circular/i.test(err.message))
      throw new TypeError(`the value is cyclic (it contains itself): ${err.message}`, { cause: err });
    throw err;
  }
  if (text === undefined) throw new TypeError(`${typeof value} is not representable as JSON`);
  return text;
}
