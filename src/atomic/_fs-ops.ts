/**
 * The file-system calls PendingFile and writeFileAtomicSync make, gathered in one object so that tests can
 * make each step fail in turn and check that nothing is left behind. Not part of the public API.
 *
 * Metadata calls and the write run synchronously: on a local disk they take microseconds, far less than
 * a round trip through libuv's threadpool, and they run while a writer holds a lock, where latency is
 * throughput. The fsyncs, which take milliseconds, run on the threadpool (`sync`, `syncDir`), or on the
 * calling thread for writeFileAtomicSync (`syncNow`, `syncDirNow`).
 */
import fs from 'node:fs';

/** fs.fsync as a promise (node:util's promisify would load all of node:util's lazy parts at import). */
const fsyncAsync = (fd: number) =>
  new Promise<void>((resolve, reject) => fs.fsync(fd, (err) => (err ? reject(err) : resolve())));

/** The most one write(2) transfers on Linux (larger requests are cut there anyway). */
const MAX_WRITE = 0x7ffff000;

/** Each step of an atomic write; replaced one at a time by failure-injection tests. */
export const ops = {
  open: (path: string, flags: string, mode: number): number => fs.openSync(path, flags, mode),
  write: (fd: number, data: Uint8Array): void => {
    // At most MAX_WRITE bytes a call: fs.writeSync refuses a length of 2 GiB or more.
    for (let off = 0; off < data.length; )
      off += fs.writeSync(fd, data, off, Math.min(data.length - off, MAX_WRITE));
  },
  chmod: (fd: number, mode: number): void => fs.fchmodSync(fd, mode),
  sync: (fd: number): Promise<void> => fsyncAsync(fd),
  syncNow: (fd: number): void => fs.fsyncSync(fd),
  close: (fd: number): void => fs.closeSync(fd),
  rename: (from: string, to: string): void => fs.renameSync(from, to),
  syncDir: async (dir: string): Promise<void> => {
    const fd = fs.openSync(dir, 'r');
    try {
      await fsyncAsync(fd);
    } finally {
      fs.closeSync(fd);
    }
  },
  syncDirNow: (dir: string): void => {
    const fd = fs.openSync(dir, 'r');
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  },
  unlink: (path: string): void => fs.unlinkSync(path),
};
