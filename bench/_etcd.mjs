// Shared by the etcd benchmarks: a throwaway single-member etcd on free loopback ports (never 2379),
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

/** Starts etcd; resolves with its endpoint and a stop function once GET /health says true. */
export async function startEtcd() {
  if (spawnSync('sh', ['-c', 'command -v etcd']).status !== 0) throw new Error('etcd is not installed');
  const dir = mkdtempSync(join(tmpdir(), 'townlock-bench-etcd-'));
  const [client, peer] = [await freePort(), await freePort()];
  const endpoint = `127.0.0.1:${client}`;
  const proc = spawn(
    'timeout',
    [
      '-k',
      '5',
      '3600',
      'etcd',
      '--name',
      'b1',
      '--data-dir',
      join(dir, 'data'),
      '--listen-client-urls',
      `http://${endpoint}`,
      '--advertise-client-urls',
      `http://${endpoint}`,
      '--listen-peer-urls',
      `http://127.0.0.1:${peer}`,
      '--initial-advertise-peer-urls',
      `http://127.0.0.1:${peer}`,
      '--initial-cluster',
      `b1=http://127.0.0.1:${peer}`,
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
  const stop = async () => {
    proc.kill('SIGTERM'); // timeout passes it on to etcd
    await exited;
    rmSync(dir, { recursive: true, force: true });
  };
  for (let i = 0; i < 500; i++) {
    try {
      const res = await fetch(`http://${endpoint}/health`);
      if ((await res.json()).health === 'true') return { endpoint, stop };
    } catch {
      // not up yet
    }
    await sleep(20);
  }
  await stop();
  throw new Error(`etcd did not become healthy: ${stderr}`);
}

const etcd3Require = createRequire(createRequire(import.meta.url).resolve('etcd3'));
/** The etcd3 package. */
export const etcd3 = createRequire(import.meta.url)('etcd3');
/** grpc-js and proto-loader as etcd3 resolves them (for the server-side lock service). */
export const grpc = etcd3Require('@grpc/grpc-js');
export const protoLoader = etcd3Require('@grpc/proto-loader');
/** etcd's protos as shipped in etcd3 (rpc.proto, kv.proto, auth.proto). */
export const protoDir = join(dirname(createRequire(import.meta.url).resolve('etcd3')), '..', 'proto');
