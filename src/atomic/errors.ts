/** Errors thrown by the atomic module. */
import { TownlockError } from '../errors.js';

/** A JSON file could not be parsed; names the file and where the problem is. */
export class JsonParseError extends TownlockError {
  /** Offset (in UTF-16 code units) of the first invalid character. */
  readonly position: number;
  /** 1-based line of the first invalid character. */
  readonly line: number;
  /** 1-based column of the first invalid character. */
  readonly column: number;

  constructor(path: string, position: number, line: number, column: number, detail: string, cause?: unknown) {
    super(
      'ERR_JSON_PARSE',
      `Invalid JSON in ${path} at line ${line}, column ${column} (position ${position}): ${detail}`,
      {
        path,
        cause,
      },
    );
    this.position = position;
    this.line = line;
    this.column = column;
  }
}
JsonParseError.prototype.name = 'JsonParseError';
