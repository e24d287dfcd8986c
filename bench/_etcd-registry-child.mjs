// One writer of the etcd registry benchmark (argv: impl, endpoints, name, count, id): `count` sequential
// adds of "<id>-<k>", through townlock's EtcdMachineRegistry (one key per machine) or through the
// whole-document CAS recipe (the registry as one JSON value: get, modify, txn(mod_revision == r -> put,
// else get the new value and try again)). Says "ready" once connected, starts on a line on stdin, and
// says "done TRIES" (transactions sent).
import { Etcd } from '../dist/etcd/index.js';
import { etcd3 } from './_etcd.mjs';

const [impl, endpointList, name, count, id] = process.argv.slice(2);
const endpoints = endpointList.split(',');
const n = Number(count);
const machine = (k) => ({ name: `${id}-${k}`, type: 'ssh', host: `${id}-${k}.example` });

let run;
let close;
let tries = 0;
if (impl === 'townlock') {
  const etcd = await Etcd.connect({ endpoints, prefix: 'bench/' });
  const registry = await etcd.registry(name, { lockTimeout: 0 });
  run = async () => {
    for (let k = 0; k < n; k++) {
      await registry.add(machine(k));
      tries++;
    }
  };
  close = () => etcd.close();
} else {
  const client = new etcd3.Etcd3({ hosts: endpoints.map((e) => `http://${e}`) });
  const key = Buffer.from(`bench-cas/${name}`);
  run = async () => {
    let current = (await client.kv.range({ key })).kvs[0];
    for (let k = 0; k < n; k++) {
      for (;;) {
        const doc = current ? JSON.parse(current.value.toString()) : { version: 1, machines: {} };
        const m = machine(k);
        doc.machines[m.name] = { name: m.name, type: m.type, host: m.host, key_path: '', town_path: '' };
        tries++;
        const res = await client.kv.txn({
          compare: [
            { key, target: 'Mod', result: 'Equal', mod_revision: current ? current.mod_revision : '0' },
          ],
          success: [
            { request_put: { key, value: Buffer.from(JSON.stringify(doc, null, 2)), prev_kv: false } },
          ],
          failure: [{ request_range: { key } }],
        });
        if (res.succeeded) {
          current = { value: Buffer.from(JSON.stringify(doc, null, 2)), mod_revision: res.header.revision };
          break;
        }
        current = res.responses[0].response_range.kvs[0];
      }
    }
  };
  close = async () => client.close();
}
process.stdout.write('ready\n');
await new Promise((resolve) => process.stdin.once('data', resolve));
process.stdin.pause();
await run();
await close();
process.stdout.write(`done ${tries}\n`);
