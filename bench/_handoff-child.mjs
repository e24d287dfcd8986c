// One side of the handoff benchmark (argv: impl, file), driven by the parent over IPC: on "acquire" it
// starts waiting, says "waiting", and reports when it holds the lock; on "release" it reports the time
// just before releasing. The parent pairs the two times.
import fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import lockfile from 'proper-lockfile';
import { FileLock } from '../dist/filelock/index.js';
import { flock, LOCK_EX, LOCK_NB, LOCK_UN, now } from './_util.mjs';

const [impl, file] = process.argv.slice(2);
const lockPath = new FileLock(file).lockPath;
fs.mkdirSync(new URL('.', `file://${lockPath}`).pathname, { recursive: true });

/** Each implementation: acquire (waiting as long as it takes) and release. */
const impls = {
  townlock: () => {
    const lock = new FileLock(file, { timeout: 0 });
    return { acquire: () => lock.lock(), release: () => lock.unlock() };
  },
  'proper-lockfile': () => {
    let release;
    const retries = { retries: 100_000, minTimeout: 5, maxTimeout: 100 };
    return {
      acquire: async () => {
        release = await lockfile.lock(file, { retries, realpath: false });
      },
      release: () => release(),
    };
  },
  'poll-10ms': () => {
    let fd;
    return {
      acquire: async () => {
        fd = fs.openSync(lockPath, 'a+');
        while (flock(fd, LOCK_EX | LOCK_NB) !== 0) await sleep(10);
      },
      release: () => fs.closeSync(fd),
    };
  },
  'blocking-flock': () => {
    let fd;
    return {
      acquire: async () => {
        fd = fs.openSync(lockPath, 'a+');
        await new Promise((resolve, reject) =>
          flock.async(fd, LOCK_EX, (err, r) =>
            err || r !== 0 ? reject(err ?? new Error('flock')) : resolve(),
          ),
        );
      },
      release: () => {
        flock(fd, LOCK_UN);
        fs.closeSync(fd);
      },
    };
  },
};

const { acquire, release } = impls[impl]();
process.on('message', async (m) => {
  if (m === 'acquire') {
    const holding = acquire();
    process.send('waiting');
    await holding;
    process.send({ acquired: now() });
  } else if (m === 'release') {
    const releasedAt = now();
    await release();
    process.send({ released: releasedAt });
  } else process.exit(0);
});
