/**
 * The Registry contract (registry-contract.ts) run against MachineRegistry (a file) and
 * EtcdMachineRegistry (a throwaway etcd): code written against the Registry interface behaves the same
 * on either. For etcd, successive registry objects of one store alternate between two Etcd connections,
 * as two processes would.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after } from 'node:test';
import { ops } from '../../src/atomic/_fs-ops.js';
import { objectMembers } from '../../src/atomic/_json-scan.js';
import { type EtcdClient, loadClient, prefixEnd } from '../../src/etcd/_client.js';
import { Etcd } from '../../src/etcd/index.js';
import { MachineRegistry } from '../../src/registry/index.js';
import { useEtcd } from '../etcd/etcd-server.js';
import { tempDir } from '../multiprocess/helpers.js';
import { type RegistryStore, registryContract } from './registry-contract.js';

/** The raw text of member `key` of the JSON object at `start` in `text`. */
function member(text: string, start: number, key: string): string | undefined {
  const m = objectMembers(text, start).find((x) => x.key === key);
  return m && text.slice(m.valueStart, m.valueEnd);
}

const tmp = tempDir('townlock-conformance-');
after(tmp.remove);
let files = 0;
registryContract({
  label: 'MachineRegistry',
  ready: () => true,
  fresh: async (): Promise<RegistryStore> => {
    const path = join(tmp.dir, `r${++files}`, 'machines.json');
    const text = () => {
      try {
        return readFileSync(path, 'utf8');
      } catch {
        return '';
      }
    };
    return {
      open: () => MachineRegistry.open(path),
      seed: async (machines, extra = {}) => {
        const body = Object.entries(machines).map(([k, raw]) => `${JSON.stringify(k)}: ${raw}`);
        const top = Object.entries(extra).map(([k, raw]) => `, ${JSON.stringify(k)}: ${raw}`);
        mkdirSync(dirname(path), { recursive: true });
        writeFileSync(path, `{"version": 1, "machines": {${body.join(', ')}}${top.join('')}}`);
      },
      rawMachine: async (name) => {
        const machines = objectMembers(text(), 0).find((m) => m.key === 'machines')!;
        return member(text(), machines.valueStart, name);
      },
      rawExtra: async (key) => member(text(), 0, key),
      dump: async () => text(),
      writes: async (fn) => {
        let renames = 0;
        const rename = ops.rename;
        ops.rename = (a, b) => {
          renames++;
          return rename(a, b);
        };
        try {
          await fn();
        } finally {
          ops.rename = rename;
        }
        return renames;
      },
    };
  },
});

const prefix = 'conformance/';
const sessions: Etcd[] = [];
let raw: EtcdClient;
const etcd = useEtcd({
  setup: async (cluster) => {
    for (let i = 0; i < 2; i++) sessions.push(await Etcd.connect({ endpoints: cluster.endpoints(), prefix }));
    raw = await loadClient(cluster.endpoints(), 2000);
  },
  teardown: async () => {
    for (const s of sessions) await s.close();
    raw.close();
  },
});
let registries = 0;
registryContract({
  label: 'EtcdMachineRegistry',
  ready: (t) => etcd.ready(t),
  fresh: async (): Promise<RegistryStore> => {
    const name = `r${++registries}`;
    const root = `${prefix}registry/${name}/`;
    let turn = 0;
    const get = async (key: string) => (await raw.range({ key })).kvs[0]?.value;
    return {
      open: () => sessions[turn++ % sessions.length]!.registry(name),
      seed: async (machines, extra = {}) => {
        for (const [k, value] of Object.entries(machines)) {
          await raw.put({ key: `${root}machines/${encodeURIComponent(k)}`, value });
        }
        const top = Object.entries(extra).map(([k, v]) => `, ${JSON.stringify(k)}: ${v}`);
        await raw.put({ key: `${root}meta`, value: `{"version": 1${top.join('')}}` });
      },
      rawMachine: (name) => get(`${root}machines/${encodeURIComponent(name)}`),
      rawExtra: async (key) => member((await get(`${root}meta`))!, 0, key),
      dump: async () => {
        const res = await raw.range({ key: root, rangeEnd: prefixEnd(root) });
        return res.kvs.map((kv) => `${kv.key}@${kv.modRevision}=${kv.value}`).join('\n');
      },
      writes: async (fn) => {
        const before = (await raw.range({ key: root })).revision;
        await fn();
        return Number((await raw.range({ key: root })).revision - before);
      },
    };
  },
});
