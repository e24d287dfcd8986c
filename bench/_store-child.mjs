// One process of bench/store.mjs (argv: impl, file, count, startAt): `count` JSON increments or JSONL
// appends with one implementation, starting at startAt (absolute ms); prints its finish time.
import fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import Conf from 'conf';
import { JSONFilePreset } from 'lowdb/node';
import lockfile from 'proper-lockfile';
import writeFileAtomic from 'write-file-atomic';
import { JsonFile, JsonlLog } from '../dist/store/index.js';
import { now } from './_util.mjs';

const [impl, file, count, startAt] = process.argv.slice(2);
const retries = { retries: 100_000, minTimeout: 1, maxTimeout: 20 };
const line = () => `${JSON.stringify({ pid: process.pid, at: Date.now() })}\n`;

/** Each implementation: one operation. */
const impls = {
  // JSON read-modify-write of {"counter": n}
  'townlock JsonFile': async () => {
    const state = await JsonFile.open(file, { defaults: () => ({ counter: 0 }), lockTimeout: 0 });
    return () => state.update((d) => void d.counter++);
  },
  'proper-lockfile + write-file-atomic': async () => async () => {
    const release = await lockfile.lock(file, { retries, realpath: false });
    try {
      const doc = JSON.parse(fs.readFileSync(file, 'utf8'));
      doc.counter++;
      await writeFileAtomic(file, JSON.stringify(doc));
    } finally {
      await release();
    }
  },
  'lowdb (no lock)': async () => {
    const db = await JSONFilePreset(file, { counter: 0 });
    return async () => {
      await db.read();
      db.data.counter++;
      await db.write();
    };
  },
  'conf (no lock)': async () => {
    const dir = file.slice(0, file.lastIndexOf('/'));
    const conf = new Conf({ cwd: dir, configName: 'conf-state', projectName: 'bench' });
    return async () => {
      conf.set('counter', (conf.get('counter') ?? 0) + 1);
    };
  },
  // JSONL appends
  'townlock JsonlLog': async () => {
    const log = await JsonlLog.open(file, { lockTimeout: 0 });
    return () => log.append({ pid: process.pid, at: Date.now() });
  },
  'townlock JsonlLog (fsync off)': async () => {
    const log = await JsonlLog.open(file, { lockTimeout: 0, fsync: false });
    return () => log.append({ pid: process.pid, at: Date.now() });
  },
  'fs.appendFile (no lock, no fsync)': async () => () => fs.promises.appendFile(file, line()),
  'proper-lockfile + fs.appendFile (no fsync)': async () => async () => {
    const release = await lockfile.lock(file, { retries, realpath: false });
    try {
      await fs.promises.appendFile(file, line());
    } finally {
      await release();
    }
  },
};

const op = await impls[impl]();
await sleep(Math.max(0, Number(startAt) - now()));
let errors = 0;
for (let i = 0; i < Number(count); i++) {
  try {
    await op();
  } catch {
    errors++; // lowdb and conf can read a file another process is writing: count, go on
  }
}
process.stdout.write(`${JSON.stringify({ finish: now(), errors })}\n`);
