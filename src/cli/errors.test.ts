/** exitCodeFor: the one mapping from an error to an exit code, as docs/cli.md's table states it. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConnectionError } from '../connection/errors.js';
import { InvalidOptionError, TownlockError, UnsupportedPlatformError } from '../errors.js';
import { LockDirError, LockTimeoutError, LockUnsafeError } from '../filelock/errors.js';
import { RegistryCorruptError, RegistryIoError } from '../registry/errors.js';
import { EXIT, errorText, exitCodeFor, InputError, RunError, UsageError } from './errors.js';

/** An OS error as Node builds them. */
const os = (code: string, syscall = 'open', path = '/x') =>
  Object.assign(new Error(`${code}: some text, ${syscall} '${path}'`), { code, syscall, path });

test('each kind of error gets the exit code of the table', () => {
  const cases: [unknown, number][] = [
    [new UsageError('bad'), EXIT.usage],
    [new InvalidOptionError('timeout', -1, 'a number'), EXIT.usage],
    [new LockTimeoutError('/l', 5, 1), EXIT.failure],
    [new TownlockError('ERR_MACHINE_NOT_FOUND', 'x'), EXIT.failure],
    [new TownlockError('ERR_LOCAL_MACHINE', 'x'), EXIT.failure],
    [new ConnectionError('m', 'connect', 'host-key', 'x'), EXIT.failure],
    [new ConnectionError('m', 'connect', 'auth', 'x'), EXIT.failure],
    [new ConnectionError('m', 'connect', 'connect', 'x'), EXIT.tempFail],
    [new ConnectionError('m', 'exec', 'timeout', 'x'), EXIT.tempFail],
    [new ConnectionError('m', 'connection', 'closed', 'x'), EXIT.tempFail],
    [new ConnectionError('m', 'connect', 'unsupported', 'x'), EXIT.data],
    [new TownlockError('ERR_ETCD_UNAVAILABLE', 'x'), EXIT.tempFail],
    [new RegistryCorruptError('/r', 'x'), EXIT.data],
    [new TownlockError('ERR_INVALID_MACHINE', 'x'), EXIT.data],
    [new RegistryIoError('/r', 'read', os('EACCES')), EXIT.noInput],
    [new RegistryIoError('/r', 'write', os('ENOSPC')), EXIT.os],
    [new LockUnsafeError('/l', 'x'), EXIT.noInput],
    [new LockDirError('/d', 'x'), EXIT.noInput],
    [new InputError('lock file', '/l', os('EACCES')), EXIT.noInput],
    [new InputError('lock file', '/l', os('EROFS')), EXIT.noInput],
    [new InputError('lock file', '/l', os('EMFILE')), EXIT.os],
    [new RunError('cmd', os('ENOENT', 'spawn cmd')), EXIT.unavailable],
    [new RunError('cmd', os('EACCES', 'spawn cmd')), EXIT.unavailable],
    [new RunError('cmd', os('ENOMEM', 'spawn cmd')), EXIT.os],
    [new UnsupportedPlatformError('plan9'), EXIT.unavailable],
    [os('EIO', 'read'), EXIT.os],
    [new TypeError('x is undefined'), EXIT.internal],
    [new TownlockError('ERR_ALREADY_LOCKED', 'x'), EXIT.internal],
    ['a string', EXIT.internal],
  ];
  for (const [err, code] of cases) assert.equal(exitCodeFor(err), code, `${(err as Error).message ?? err}`);
});

test('messages: raw OS errors in words with the errno name, usage errors with their hint', () => {
  assert.equal(
    errorText(os('EACCES', 'mkdir', '/x/.gastown')),
    'cannot mkdir /x/.gastown: permission denied [EACCES]',
  );
  assert.equal(
    errorText(new InputError('lock file', '/x.lock', os('ENOENT'))),
    'cannot open lock file /x.lock: no such file or directory [ENOENT]',
  );
  assert.equal(errorText(new RunError('nope', os('ENOENT'))), 'cannot run nope: command not found [ENOENT]');
  assert.equal(
    errorText(new UsageError('missing NAME', 'usage: x NAME')),
    'missing NAME; usage: x NAME [ERR_USAGE]',
  );
});
