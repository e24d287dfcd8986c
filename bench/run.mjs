// Runs every benchmark in turn (npm run bench). Each prints markdown tables; BENCHMARKS.md records them.
import { spawnSync } from 'node:child_process';

for (const script of [
  'lock-uncontended.mjs',
  'lock-handoff.mjs',
  'contention.mjs',
  'registry.mjs',
  'registry-scale.mjs',
  'store.mjs',
  'cli-startup.mjs',
  'etcd-lock.mjs',
  'etcd-registry.mjs',
]) {
  console.log(`\n## bench/${script}\n`);
  const r = spawnSync(process.execPath, [new URL(script, import.meta.url).pathname], { stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}
