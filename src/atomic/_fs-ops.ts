/**
 * The file-system calls PendingFile makes, gathered in one object so that tests can make each step fail
 * in turn and check that nothing is left behind. Not part of the public API.
 */
import fs from 'node:fs/promises';

/** Each step of an atomic write; replaced one at a time by failure-injection tests. */
export const ops = {
  open: (path: string, flags: string, mode: number) => fs.open(path, flags, mode),
  write: (fh: fs.FileHandle, data: Uint8Array) => fh.writeFile(data),
  chmod: (fh: fs.FileHandle, mode: number) => fh.chmod(mode),
  sync: (fh: fs.FileHandle) => fh.sync(),
  close: (fh: fs.FileHandle) => fh.close(),
  rename: (from: string, to: string) => fs.rename(from, to),
  syncDir: async (dir: string) => {
    const handle = await fs.open(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  },
  unlink: (path: string) => fs.unlink(path),
};
