/** Checks on a command's input files, reported as InputError (exit 66) with the real reason. */
import fs from 'node:fs';
import { InputError, isOsError } from '../errors.js';

/**
 * Throws InputError unless something is at `path`, naming the real errno: a file in a directory the user
 * cannot search is "permission denied [EACCES]", not "no such file" (which fs.existsSync would imply).
 */
export function requireInput(path: string, what = ''): void {
  try {
    fs.statSync(path);
  } catch (err) {
    throw isOsError(err) ? new InputError(what, path, err) : err;
  }
}
