/**
 * Argument checks for every public connection method and constructor. A bad argument becomes an
 * InvalidOptionError (`ERR_INVALID_OPTION`) naming it, before anything touches the machine, so callers never
 * see a raw TypeError or Node's ERR_INVALID_ARG_TYPE, and a number is never taken for a file descriptor.
 */
import { InvalidOptionError } from '../errors.js';
import type { ExecOptions, TmuxSessionOptions } from './connection.js';

/** Throws unless `value` is a non-empty string without NUL bytes (a path, a name, a command). */
export function checkString(name: string, value: unknown): asserts value is string {
  if (typeof value !== 'string' || value === '' || value.includes('\0'))
    throw new InvalidOptionError(name, value, 'a non-empty string without NUL bytes');
}

/** Throws unless `value` is undefined or a valid {@link checkString} string. */
export function checkOptionalString(name: string, value: unknown): asserts value is string | undefined {
  if (value !== undefined) checkString(name, value);
}

/** Throws unless `value` is undefined or an object (the options argument of a method). */
export function checkOptions(value: unknown): void {
  if (value !== undefined && (value === null || typeof value !== 'object' || Array.isArray(value)))
    throw new InvalidOptionError('options', value, 'an object');
}

/** Throws unless `value` is undefined or a positive finite number (a duration in ms). */
export function checkPositiveMs(name: string, value: unknown): void {
  if (value !== undefined && (typeof value !== 'number' || !Number.isFinite(value) || value <= 0))
    throw new InvalidOptionError(name, value, 'a positive finite number of ms');
}

/** Validates writeFile's arguments. */
export function checkWriteFile(path: unknown, data: unknown, options: unknown): void {
  checkString('path', path);
  if (typeof data !== 'string' && !(data instanceof Uint8Array))
    throw new InvalidOptionError('data', data, 'a string or a Uint8Array');
  checkOptions(options);
  const mode = (options as { mode?: unknown } | undefined)?.mode;
  if (mode !== undefined && (!Number.isInteger(mode) || (mode as number) < 0 || (mode as number) > 0o7777))
    throw new InvalidOptionError('mode', mode, 'file permission bits (an integer from 0 to 0o7777)');
}

/** Validates exec's arguments: command, args, and every option. */
export function checkExec(command: unknown, args: unknown, options: unknown): void {
  checkString('command', command);
  if (!Array.isArray(args)) throw new InvalidOptionError('args', args, 'an array of strings');
  args.forEach((arg, i) => {
    if (typeof arg !== 'string' || arg.includes('\0'))
      throw new InvalidOptionError(`args[${i}]`, arg, 'a string without NUL bytes');
  });
  checkOptions(options);
  const { cwd, env, timeout, signal, input, onStdout, onStderr } = (options ?? {}) as ExecOptions;
  checkOptionalString('cwd', cwd);
  if (env !== undefined) {
    if (env === null || typeof env !== 'object' || Array.isArray(env))
      throw new InvalidOptionError('env', env, 'an object of strings');
    for (const [key, value] of Object.entries(env)) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key))
        throw new InvalidOptionError('env', key, 'variable names matching [A-Za-z_][A-Za-z0-9_]*');
      if (typeof value !== 'string' || value.includes('\0'))
        throw new InvalidOptionError(`env.${key}`, value, 'a string without NUL bytes');
    }
  }
  checkPositiveMs('timeout', timeout);
  if (signal !== undefined && !(signal instanceof AbortSignal))
    throw new InvalidOptionError('signal', signal, 'an AbortSignal');
  if (
    input !== undefined &&
    typeof input !== 'string' &&
    !(input instanceof Uint8Array) &&
    !isReadable(input)
  )
    throw new InvalidOptionError('input', input, 'a string, a Uint8Array or a readable stream');
  if (onStdout !== undefined && typeof onStdout !== 'function')
    throw new InvalidOptionError('onStdout', onStdout, 'a function');
  if (onStderr !== undefined && typeof onStderr !== 'function')
    throw new InvalidOptionError('onStderr', onStderr, 'a function');
}

/** Whether `value` looks like a Node readable stream (what pipe() needs: pipe, on, unpipe). */
function isReadable(value: unknown): boolean {
  const v = value as { pipe?: unknown; on?: unknown; unpipe?: unknown } | null;
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof v.pipe === 'function' &&
    typeof v.on === 'function' &&
    typeof v.unpipe === 'function'
  );
}

/** Validates tmuxNewSession's arguments. */
export function checkTmuxNewSession(name: unknown, options: unknown): void {
  checkString('name', name);
  checkOptions(options);
  const { cwd, command } = (options ?? {}) as TmuxSessionOptions;
  checkOptionalString('cwd', cwd);
  checkOptionalString('command', command);
}

/** Validates tmuxSendKeys's arguments (keys may be empty: tmux then types nothing). */
export function checkTmuxSendKeys(session: unknown, keys: unknown, options: unknown): void {
  checkString('session', session);
  if (typeof keys !== 'string' || keys.includes('\0'))
    throw new InvalidOptionError('keys', keys, 'a string without NUL bytes');
  checkOptions(options);
  const enter = (options as { enter?: unknown } | undefined)?.enter;
  if (enter !== undefined && typeof enter !== 'boolean')
    throw new InvalidOptionError('enter', enter, 'a boolean');
}

/** Validates the options every connection constructor takes (name, tmuxSocket). */
export function checkBaseOptions(options: unknown): void {
  if (options === null || typeof options !== 'object' || Array.isArray(options))
    throw new InvalidOptionError('options', options, 'an object');
  const { name, tmuxSocket } = options as { name?: unknown; tmuxSocket?: unknown };
  checkOptionalString('name', name);
  checkOptionalString('tmuxSocket', tmuxSocket);
}
