// Shared by the etcd benchmarks: a throwaway etcd (one member or three) on free loopback ports (never 2379),
// bounded by `timeout` so it cannot outlive a crashed run, and the etcd3/grpc-js modules etcd3 uses.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** A free loopback port other than etcd's defaults. */
async function freePort() {
  for (;;) {
    const port = await new Promise((resolve, reject) => {
      const s = createServer();
      s.once('error', reject);
      s.listen(0, '127.0.0.1', () => {
        const { port } = s.address();
        s.close(() => resolve(port));
      });
    });
    if (port !== 2379 && port !== 2380) return port;
  }
}

/**
 * Starts a throwaway etcd of `members` (1 or 3) members on loopback; resolves once every member's
 * GET /health says true, with the client endpoints (`endpoint`: the first) and a stop function.
 */
export async function startEtcd({ members = 1 } = {}) {
  if (spawnSync('sh', ['-c', 'command -v etcd']).status !== 0) throw new Error('etcd is not installed');
  const dir = mkdtempSync(join(tmpdir(), 'townlock-bench-etcd-'));
  const ports = [];
  for (let i = 0; i < members; i++) ports.push({ client: await freePort(), peer: await freePort() });
  const cluster = ports.map((p, i) => `b${i + 1}=http://127.0.0.1:${p.peer}`).join(',');
  const procs = ports.map(({ client, peer }, i) => {
    const endpoint = `127.0.0.1:${client}`;
    const proc = spawn(
      'timeout',
      [
        '-k',
        '5',
        '3600',
        'etcd',
        '--name',
        `b${i + 1}`,
        '--data-dir',
        join(dir, `data${i + 1}`),
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
        `townlock-bench-${process.pid}-${ports[0].client}`,
        '--logger',
        'zap',
        '--log-level',
        'warn',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    proc.stderr.setEncoding('utf8').on('data', (chunk) => {
      stderr = (stderr + chunk).slice(-4000);
    });
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    return { endpoint, proc, exited, stderr: () => stderr };
  });
  const stop = async () => {
    // One at a time (SIGTERM to every member at once takes seconds: the leader hands over to members
    // that are going away); `timeout` passes the signal on to its etcd.
    for (const p of procs) {
      p.proc.kill('SIGTERM');
      await p.exited;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const endpoints = procs.map((p) => p.endpoint);
  for (let i = 0; i < 500; i++) {
    const healthy = await Promise.all(
      endpoints.map((e) =>
        fetch(`http://${e}/health`, { signal: AbortSignal.timeout(1000) })
          .then((res) => res.json())
          .then((body) => body.health === 'true')
          .catch(() => false),
      ),
    );
    if (healthy.every(Boolean)) return { endpoint: endpoints[0], endpoints, stop };
    await sleep(20);
  }
  await stop();
  throw new Error(`etcd did not become healthy: ${procs.map((p) => p.stderr()).join('\n')}`);
}

const etcd3Require = createRequire(createRequire(import.meta.url).resolve('etcd3'));
/** The etcd3 package. */
export const etcd3 = createRequire(import.meta.url)('etcd3');
/** grpc-js and proto-loader as etcd3 resolves them (for the server-side lock service). */
export const grpc = etcd3Require('@grpc/grpc-js');
export const protoLoader = etcd3Require('@grpc/proto-loader');
/** etcd's protos as shipped in etcd3 (rpc.proto, kv.proto, auth.proto). */
export const protoDir = join(dirname(createRequire(import.meta.url).resolve('etcd3')), '..', 'proto');
