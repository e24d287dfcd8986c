// A client for etcd's server-side lock service (v3lockpb.Lock), whose proto etcd3 does not ship: the
// service is declared here from etcd's v3lock.proto, reusing ResponseHeader from etcd3's rpc.proto.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { grpc, protoDir, protoLoader } from './_etcd.mjs';

const PROTO = `syntax = "proto3";
package v3lockpb;
import "rpc.proto";
service Lock {
  rpc Lock(LockRequest) returns (LockResponse) {}
  rpc Unlock(UnlockRequest) returns (UnlockResponse) {}
}
message LockRequest { bytes name = 1; int64 lease = 2; }
message LockResponse { etcdserverpb.ResponseHeader header = 1; bytes key = 2; }
message UnlockRequest { bytes key = 1; }
message UnlockResponse { etcdserverpb.ResponseHeader header = 1; }
`;

/** A v3lock client for `endpoint`: lock(name, lease) resolves with the key once held; unlock(key). */
export function v3lockClient(endpoint) {
  const dir = mkdtempSync(join(tmpdir(), 'townlock-v3lock-'));
  writeFileSync(join(dir, 'v3lock.proto'), PROTO);
  let def;
  try {
    def = protoLoader.loadSync(join(dir, 'v3lock.proto'), {
      includeDirs: [dir, protoDir],
      keepCase: true,
      longs: String,
      defaults: true,
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const { v3lockpb } = grpc.loadPackageDefinition(def);
  const client = new v3lockpb.Lock(endpoint, grpc.credentials.createInsecure());
  const call = (method, req) =>
    new Promise((resolve, reject) => client[method](req, (err, res) => (err ? reject(err) : resolve(res))));
  return {
    lock: async (name, lease) => (await call('Lock', { name: Buffer.from(name), lease: String(lease) })).key,
    unlock: (key) => call('Unlock', { key }),
    close: () => client.close(),
  };
}
