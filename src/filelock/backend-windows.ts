/**
 * LockFileEx/UnlockFileEx through koffi, for Windows.
 *
 * NOT RUN IN CI: townlock is developed and tested on Linux; this file follows the documented Win32 API and
 * gofrs/flock's choices but has not been exercised on Windows. Like gofrs/flock and py-filelock it locks
 * byte 0 for length 1, and holder info is written from byte 1 on, because Windows byte-range locks are
 * mandatory: other handles cannot read a locked range.
 */
import { futimesSync } from 'node:fs';
import koffi from 'koffi';
import type { LockBackend, LockType } from './backend.js';

const LOCKFILE_FAIL_IMMEDIATELY = 0x1;
const LOCKFILE_EXCLUSIVE_LOCK = 0x2;
const ERROR_LOCK_VIOLATION = 33;
const ERROR_IO_PENDING = 997;

/**
 * Maps a Node file descriptor to its Win32 HANDLE. Node's descriptors come from the C runtime linked into
 * node.exe, so the right table is node.exe's own: libuv's uv_get_osfhandle, which node.exe exports for
 * addons. The shared UCRT's _get_osfhandle is the fallback for builds that link the CRT dynamically.
 */
function osHandleGetter(): (fd: number) => bigint | number {
  try {
    return koffi.load(process.execPath).func('intptr_t uv_get_osfhandle(int fd)') as (
      fd: number,
    ) => bigint | number;
  } catch {
    return koffi.load('ucrtbase.dll').func('intptr_t _get_osfhandle(int fd)') as (
      fd: number,
    ) => bigint | number;
  }
}

/** Builds the LockFileEx backend; throws if kernel32 or the C runtime cannot be loaded. */
export function createWindowsBackend(): LockBackend {
  const kernel32 = koffi.load('kernel32.dll');
  koffi.struct('TL_OVERLAPPED', {
    Internal: 'uintptr_t',
    InternalHigh: 'uintptr_t',
    Offset: 'uint32_t',
    OffsetHigh: 'uint32_t',
    hEvent: 'void *',
  });
  const getOsfHandle = osHandleGetter();
  const lockFileEx = kernel32.func(
    'int __stdcall LockFileEx(intptr_t h, uint32_t flags, uint32_t reserved, uint32_t lo, uint32_t hi, _Inout_ TL_OVERLAPPED *ov)',
  ) as (h: bigint | number, flags: number, r: number, lo: number, hi: number, ov: object) => number;
  const unlockFileEx = kernel32.func(
    'int __stdcall UnlockFileEx(intptr_t h, uint32_t reserved, uint32_t lo, uint32_t hi, _Inout_ TL_OVERLAPPED *ov)',
  ) as (h: bigint | number, r: number, lo: number, hi: number, ov: object) => number;
  const getLastError = kernel32.func('uint32_t __stdcall GetLastError()') as () => number;

  /** A fresh OVERLAPPED naming byte 0. */
  const overlapped = () => ({ Internal: 0, InternalHigh: 0, Offset: 0, OffsetHigh: 0, hEvent: null });

  return {
    name: 'LockFileEx',
    infoOffset: 1,
    tryLock(fd: number, type: LockType): boolean {
      const flags = LOCKFILE_FAIL_IMMEDIATELY | (type === 'exclusive' ? LOCKFILE_EXCLUSIVE_LOCK : 0);
      if (lockFileEx(getOsfHandle(fd), flags, 0, 1, 0, overlapped()) !== 0) return true;
      const error = getLastError();
      if (error === ERROR_LOCK_VIOLATION || error === ERROR_IO_PENDING) return false;
      throw new Error(`LockFileEx failed with Win32 error ${error}`);
    },
    touch(fd: number): void {
      const now = Date.now() / 1000;
      futimesSync(fd, now, now);
    },
    unlock(fd: number): void {
      if (unlockFileEx(getOsfHandle(fd), 0, 1, 0, overlapped()) === 0) {
        throw new Error(`UnlockFileEx failed with Win32 error ${getLastError()}`);
      }
    },
  };
}
