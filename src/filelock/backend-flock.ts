/**
 * flock(2) through koffi, for Linux, macOS and the BSDs.
 *
 * flock locks belong to the open file description, so two descriptors opened separately in one process
 * exclude each other; that is what lets worker threads and separate FileLock handles exclude each other.
 * This is the same primitive util-linux flock(1), Python's fcntl.flock and gofrs/flock use, so all of them
 * exclude each other on the same lock file. On Linux NFS, flock is emulated with fcntl byte-range locks
 * over the whole file, which is why lock files are opened read-write.
 */
import { constants } from 'node:os';
import koffi from 'koffi';
import type { LockBackend, LockType } from './backend.js';

const LOCK_SH = 1;
const LOCK_EX = 2;
const LOCK_NB = 4;
const LOCK_UN = 8;

/** The C library name koffi should load on this platform. */
function libcName(): string {
  if (process.platform === 'darwin') return 'libSystem.B.dylib';
  if (process.platform === 'linux') return 'libc.so.6';
  return 'libc.so.7';
}

let libcLoaded: ReturnType<typeof koffi.load> | undefined;

/** The C library through koffi, loaded once (also for the CLI's terminal checks: one copy of koffi). */
export function loadLibc(): ReturnType<typeof koffi.load> {
  libcLoaded ??= koffi.load(libcName());
  return libcLoaded;
}

/** Builds the flock backend; throws if libc cannot be loaded. */
export function createFlockBackend(): LockBackend {
  const libc = loadLibc();
  const flock = libc.func('int flock(int fd, int operation)') as (fd: number, op: number) => number;
  // futimens(fd, NULL) sets both times to now: one call, cheaper than building timestamps in JavaScript.
  const futimens = libc.func('int futimens(int fd, void *times)') as (fd: number, times: null) => number;
  const { EWOULDBLOCK, EAGAIN, EINTR } = constants.errno;

  /** Calls flock, retrying on EINTR; returns 0 or the errno. */
  function call(fd: number, op: number): number {
    for (;;) {
      if (flock(fd, op) === 0) return 0;
      const errno = koffi.errno();
      if (errno !== EINTR) return errno;
    }
  }

  return {
    name: 'flock',
    infoOffset: 0,
    tryLock(fd: number, type: LockType): boolean {
      const errno = call(fd, (type === 'shared' ? LOCK_SH : LOCK_EX) | LOCK_NB);
      if (errno === 0) return true;
      if (errno === EWOULDBLOCK || errno === EAGAIN) return false;
      throw errnoError(errno, 'flock');
    },
    unlock(fd: number): void {
      const errno = call(fd, LOCK_UN);
      if (errno !== 0) throw errnoError(errno, 'flock');
    },
    touch(fd: number): void {
      if (futimens(fd, null) !== 0) throw errnoError(koffi.errno(), 'futimens');
    },
  };
}

/** Builds a Node-style system error (`code`, `errno`, `syscall`) from a raw errno. */
function errnoError(errno: number, syscall: string): NodeJS.ErrnoException {
  const name = Object.entries(constants.errno).find(([, v]) => v === errno)?.[0] ?? `E${errno}`;
  const err: NodeJS.ErrnoException = new Error(`${syscall} failed: ${name}`);
  err.code = name;
  err.errno = -errno;
  err.syscall = syscall;
  return err;
}
