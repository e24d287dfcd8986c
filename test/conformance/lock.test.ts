/**
 * The Lock contract (lock-contract.ts) run against FileLock and against EtcdLock on a throwaway etcd:
 * code written against the Lock interface behaves the same on either backend. Each `make()` of the etcd
 * backend is another Etcd session (two participants, as two processes are); handles made by one `make()`
 * share a session (one participant, whose nested locks re-enter).
 */
import { join } from 'node:path';
import { after } from 'node:test';
import { Etcd } from '../../src/etcd/index.js';
import { FileLock } from '../../src/filelock/index.js';
import { useEtcd } from '../etcd/etcd-server.js';
import { tempDir } from '../multiprocess/helpers.js';
import { lockContract, type MakeLock } from './lock-contract.js';

const tmp = tempDir();
after(tmp.remove);
lockContract(
  'FileLock',
  () => (name, options) => new FileLock(join(tmp.dir, name), options),
  () => true,
);

const sessions: Etcd[] = [];
const etcd = useEtcd({
  setup: async (cluster) => {
    for (let i = 0; i < 2; i++) sessions.push(await Etcd.connect({ endpoints: cluster.endpoints() }));
  },
  teardown: async () => {
    for (const s of sessions) await s.close();
  },
});
let turn = 0;
/** Alternates between two sessions, so the two handles of a test are two etcd clients. */
const make = (): MakeLock => {
  const session = sessions[turn++ % sessions.length]!;
  return (name, options) => session.lock(name, options);
};
lockContract('EtcdLock', make, (t) => etcd.ready(t));
