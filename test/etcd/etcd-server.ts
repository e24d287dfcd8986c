/**
 * Throwaway etcd servers for tests: a single member or a 3-member cluster on free loopback ports (never
 * 2379/2380), each with a temporary data dir, started as `timeout -k 5 BOUND etcd ...` so that a crashed
 * test cannot leave etcd running past BOUND seconds. Members are stopped by the PID of our own child,
 * never by name, and never touch a system etcd.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { requireTool } from '../multiprocess/helpers.js';

/** Where etcd is, if installed (Debian's etcd-server puts it in /usr/bin). */
export function etcdBinary(): string | undefined {
  const r = spawnSync('sh', ['-c', 'command -v etcd'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

/** One member of a throwaway cluster. */
export interface Member {
  readonly name: string;
  /** `127.0.0.1:PORT` of its client URL. */
  readonly endpoint: string;
  /** The `timeout` wrapper we spawned (a new one after a restart). */
  readonly wrapper: ChildProcess;
  /** Whether we killed it. */
  dead: boolean;
  /** The etcd process itself (child of the wrapper). */
  pid(): number;
  /** Sends `signal` to the etcd process (SIGKILL by default) and waits until the wrapper has exited. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts a killed member again on its data dir and ports; resolves once it is healthy. */
  restart(): Promise<void>;
}

/** A running throwaway cluster. */
export interface EtcdCluster {
  readonly members: Member[];
  /** Client endpoints of the members still alive, in member order. */
  endpoints(): string[];
  /** The member that is leader now, asked through the maintenance status API of a live member. */
  leader(): Promise<Member>;
  /** Kills every member and removes the data dirs; idempotent. */
  stop(): Promise<void>;
}

/** A free loopback TCP port other than etcd's defaults. */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = createServer();
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        const address = server.address();
        server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
      });
    });
    if (port !== 2379 && port !== 2380 && port !== 0) return port;
  }
}

/** The children of `pid` (Linux /proc). */
function childrenOf(pid: number): number[] {
  const found: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      // Field 4 is the parent pid; the command (field 2) is in parentheses and may contain spaces.
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) found.push(Number(name));
    } catch {
      // exited while we looked
    }
  }
  return found;
}

/** Resolves when GET /health says true, or rejects after `ms` (or when the wrapper exits). */
async function waitHealthy(endpoint: string, wrapper: ChildProcess, stderr: () => string, ms: number) {
  const due = performance.now() + ms;
  while (performance.now() < due) {
    if (wrapper.exitCode !== null || wrapper.signalCode !== null)
      throw new Error(`etcd at ${endpoint} exited (${wrapper.exitCode ?? wrapper.signalCode}): ${stderr()}`);
    try {
      const res = await fetch(`http://${endpoint}/health`, { signal: AbortSignal.timeout(500) });
      const body = (await res.json()) as { health?: string };
      if (body.health === 'true') return;
    } catch {
      // not listening yet
    }
    await sleep(20);
  }
  throw new Error(`etcd at ${endpoint} not healthy within ${ms} ms: ${stderr()}`);
}

/** Options of {@link startEtcd}. */
export interface StartOptions {
  /** 1 or 3 members. @default 1 */
  members?: 1 | 3;
  /** Seconds after which `timeout` kills each member whatever happens. @default 120 */
  bound?: number;
  /** More etcd flags for every member. */
  extraArgs?: string[];
}

/** Starts a throwaway cluster and resolves once every member reports healthy. */
export async function startEtcd(options: StartOptions = {}): Promise<EtcdCluster> {
  const { members: count = 1, bound = 120, extraArgs = [] } = options;
  const binary = etcdBinary();
  if (!binary) throw new Error('etcd is not installed (apt-get install etcd-server)');
  const dir = mkdtempSync(join(tmpdir(), 'townlock-etcd-'));
  const ports: { client: number; peer: number }[] = [];
  for (let i = 0; i < count; i++) ports.push({ client: await freePort(), peer: await freePort() });
  const names = ports.map((_, i) => `n${i + 1}`);
  const cluster = names.map((n, i) => `${n}=http://127.0.0.1:${ports[i]!.peer}`).join(',');
  const token = `townlock-test-${process.pid}-${ports[0]!.client}`;
  const members: Member[] = [];
  const stderrs: string[] = [];
  for (let i = 0; i < count; i++) {
    const { client, peer } = ports[i]!;
    const endpoint = `127.0.0.1:${client}`;
    const args = [
      '-k',
      '5',
      String(bound),
      binary,
      '--name',
      names[i]!,
      '--data-dir',
      join(dir, names[i]!),
      '--listen-client-urls',
      `http://${endpoint}`,
      '--advertise-client-urls',
      `http://${endpoint}`,
      '--listen-peer-urls',
      `http://127.0.0.1:${peer}`,
      '--initial-advertise-peer-urls',
      `http://127.0.0.1:${peer}`,
      '--initial-cluster',
      cluster,
      '--initial-cluster-state',
      'new',
      '--initial-cluster-token',
      token,
      '--logger',
      'zap',
      '--log-level',
      'warn',
      ...extraArgs,
    ];
    let wrapper!: ChildProcess;
    let exited!: Promise<void>;
    let etcdPid: number | undefined;
    const launch = () => {
      wrapper = spawn('timeout', args, { stdio: ['ignore', 'ignore', 'pipe'] });
      stderrs[i] = '';
      wrapper.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
        stderrs[i] = (stderrs[i]! + chunk).slice(-4000);
      });
      exited = new Promise<void>((resolve) => wrapper.once('exit', () => resolve()));
      etcdPid = undefined;
    };
    launch();
    const member: Member = {
      name: names[i]!,
      endpoint,
      get wrapper() {
        return wrapper;
      },
      dead: false,
      pid: () => {
        etcdPid ??= childrenOf(wrapper.pid!)[0];
        if (etcdPid === undefined) throw new Error(`no etcd child under timeout pid ${wrapper.pid}`);
        return etcdPid;
      },
      kill: async (signal = 'SIGKILL') => {
        if (member.dead) return;
        member.dead = true;
        try {
          process.kill(member.pid(), signal);
        } catch {
          wrapper.kill('SIGKILL'); // etcd already gone: make sure the wrapper goes too
        }
        await exited;
      },
      restart: async () => {
        if (!member.dead) throw new Error(`${member.name} is running`);
        // Same name, data dir and ports: it rejoins with its data (--initial-cluster-state is then ignored).
        launch();
        member.dead = false;
        await waitHealthy(endpoint, wrapper, () => stderrs[i]!, 15_000);
        member.pid();
      },
    };
    members.push(member);
  }
  const endpoints = () => members.filter((m) => !m.dead).map((m) => m.endpoint);
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await Promise.all(members.map((m) => m.kill('SIGKILL').catch(() => {})));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await Promise.all(members.map((m, i) => waitHealthy(m.endpoint, m.wrapper, () => stderrs[i]!, 15_000)));
    for (const m of members) m.pid(); // resolve each etcd pid while the wrapper is surely its parent
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    members,
    endpoints,
    leader: async () => {
      for (const m of members.filter((x) => !x.dead)) {
        try {
          // The grpc-gateway form of Maintenance.Status: header.member_id and leader are ids as strings.
          const res = await fetch(`http://${m.endpoint}/v3/maintenance/status`, {
            method: 'POST',
            body: '{}',
            signal: AbortSignal.timeout(1000),
          });
          const status = (await res.json()) as { header: { member_id: string }; leader: string };
          for (const other of members.filter((x) => !x.dead)) {
            const r = await fetch(`http://${other.endpoint}/v3/maintenance/status`, {
              method: 'POST',
              body: '{}',
              signal: AbortSignal.timeout(1000),
            });
            const s = (await r.json()) as { header: { member_id: string } };
            if (s.header.member_id === status.leader) return other;
          }
        } catch {
          // this member cannot tell; ask the next
        }
      }
      throw new Error('no live member knows a leader');
    },
    stop,
  };
}

/** A cluster for one test file: started in before() when etcd is installed, stopped in after(). */
export interface EtcdFixture {
  /** Call first in every test: false (test skipped) when etcd is missing on a dev machine; throws under CI. */
  ready(t: { skip: (reason: string) => void }): boolean;
  /** The running cluster (only after ready() returned true). */
  readonly cluster: EtcdCluster;
}

/**
 * Registers before/after hooks that run one throwaway cluster for the calling test file. `setup` runs
 * right after the start and `teardown` before the stop, inside the same hooks: Node 20 runs a file's
 * top-level before() hooks concurrently, so a second hook could not rely on the first.
 */
export function useEtcd(
  options: StartOptions & {
    setup?: (cluster: EtcdCluster) => Promise<void>;
    teardown?: () => Promise<void>;
  } = {},
): EtcdFixture {
  const installed = etcdBinary() !== undefined;
  let cluster: EtcdCluster | undefined;
  before(async () => {
    if (!installed) return;
    cluster = await startEtcd(options);
    await options.setup?.(cluster);
  });
  after(async () => {
    try {
      if (cluster) await options.teardown?.();
    } finally {
      await cluster?.stop();
    }
  });
  return {
    ready: (t) => requireTool(t, 'etcd', installed),
    get cluster() {
      if (!cluster) throw new Error('the etcd cluster is not running');
      return cluster;
    },
  };
}
