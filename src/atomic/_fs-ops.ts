/**
 * The file-system calls PendingFile makes, gathered in one object so that tests can make each step fail
 * in turn and check that nothing is left behind. Not part of the public API.
 *
 * Metadata calls and the write run synchronously: on a local disk they take microseconds, far less than
 * a round trip through libuv's threadpool, and they run while a writer holds a lock, where latency is
 * throughput. The fsyncs, which take milliseconds, run on the threadpool.
 */
import fs from 'node:fs';

/** fs.fsync as a promise (node:util's promisify would load all of node:util's lazy parts at import). */
const fsyncAsync = (fd: number) =>
  new Promise<void>((resolve, reject) => fs.fsync(fd, (err) => (err ? reject(err) : resolve())));

/** Each step of an atomic write; replaced one at a time by failure-injection tests. */
export const ops = {
  open: async (path: string, flags: string, mode: number): Promise<number> => fs.openSync(path, flags, mode),
  write: async (fd: number, data: Uint8Array): Promise<void> => {
    for (let off = 0; off < data.length; ) off += fs.writeSync(fd, data, off, data.length - off);
  },
  chmod: async (fd: number, mode: number): Promise<void> => fs.fchmodSync(fd, mode),
  sync: (fd: number): Promise<void> => fsyncAsync(fd),
  close: async (fd: number): Promise<void> => fs.closeSync(fd),
  rename: async (from: string, to: string): Promise<void> => fs.renameSync(from, to),
  syncDir: async (dir: string): Promise<void> => {
    const fd = fs.openSync(dir, 'r');
    try {
      await fsyncAsync(fd);
    } finally {
      fs.closeSync(fd);
    }
  },
  unlink: async (path: string): Promise<void> => fs.unlinkSync(path),
};
