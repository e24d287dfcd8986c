// One side of the etcd handoff benchmark (argv: impl, endpoint, name), driven by the parent over IPC: on
// "acquire" it starts waiting, says "waiting", and reports when it holds the lock; on "release" it
// reports the time just before releasing; anything else closes and exits.
import { setTimeout as sleep } from 'node:timers/promises';
import { Etcd } from '../dist/etcd/index.js';
import { etcd3 } from './_etcd.mjs';
import { now } from './_util.mjs';
import { v3lockClient } from './_v3lock.mjs';

const [impl, endpoint, name] = process.argv.slice(2);

/** Each implementation: acquire (waiting as long as it takes), release, close. */
const impls = {
  // townlock: one session lease; wait on the key just before ours, watched from our read revision + 1.
  townlock: async () => {
    const etcd = await Etcd.connect({ endpoints: [endpoint] });
    const lock = etcd.lock(name, { timeout: 0 });
    return { acquire: () => lock.lock(), release: () => lock.unlock(), close: () => etcd.close() };
  },
  // etcd's server-side lock service (v3lockpb.Lock) with one session lease, as etcdctl lock does.
  'v3lock-service': async () => {
    const client = new etcd3.Etcd3({ hosts: `http://${endpoint}` });
    const lease = client.lease(10);
    const id = await lease.grant();
    const service = v3lockClient(endpoint);
    let key;
    return {
      acquire: async () => {
        key = await service.lock(name, id);
      },
      release: () => service.unlock(key),
      close: async () => {
        service.close();
        await lease.revoke();
        client.close();
      },
    };
  },
  // etcd3's lock(): a try-lock (a new lease per attempt), retried every 10 ms.
  'etcd3-lock-retry-10ms': async () => {
    const client = new etcd3.Etcd3({ hosts: `http://${endpoint}` });
    let lock;
    return {
      acquire: async () => {
        for (;;) {
          lock = client.lock(name);
          try {
            await lock.acquire();
            return;
          } catch (err) {
            if (!(err instanceof etcd3.EtcdLockFailedError)) throw err;
            await sleep(10);
          }
        }
      },
      release: () => lock.release(),
      close: () => client.close(),
    };
  },
};

const { acquire, release, close } = await impls[impl]();
process.send('ready');
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
  } else {
    await close();
    process.exit(0);
  }
});
