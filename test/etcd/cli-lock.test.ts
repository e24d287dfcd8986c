/**
 * `townlock lock run --etcd`, run as a user runs it against a real etcd: exclusion across processes,
 * shared holders, the conflict and signal exit codes, the lock lost while the command runs (SIGTERM,
 * SIGKILL after --kill-after, exit 75), an unreachable cluster (75) and bad arguments (64).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { after, afterEach, test } from 'node:test';
import { type EtcdClient, loadClient, prefixEnd } from '../../src/etcd/_client.js';
import { DIST, reapAll, start, tempDir } from '../multiprocess/helpers.js';
import { useEtcd } from './etcd-server.js';

const BIN = resolve(DIST, '..', 'bin', 'townlock.js');
let raw: EtcdClient;
const etcd = useEtcd({
  setup: async (cluster) => {
    raw = await loadClient(cluster.endpoints(), 2000);
  },
  teardown: async () => raw.close(),
});
afterEach(reapAll);
const tmp = tempDir('townlock-etcd-cli-');
after(tmp.remove);
let seq = 0;
/** A fresh key prefix per test, so that tests never see each other's locks. */
const prefix = () => `cli-${process.pid}-${++seq}/`;
const target = (p: string) => `${etcd.cluster.endpoints().join(',')}/${p}`;

function tl(args: string[], env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    cwd: tmp.dir,
    env: { PATH: process.env.PATH, HOME: tmp.dir, ...env },
    encoding: 'utf8',
    timeout: 30_000,
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** Starts townlock in the background (output captured line by line). */
const bg = (args: string[], env: NodeJS.ProcessEnv = {}) =>
  start(process.execPath, [BIN, ...args], { PATH: process.env.PATH, ...env });

test('lock run --etcd excludes across processes: a read-sleep-write counter ends exact', {
  timeout: 90_000,
}, async (t) => {
  if (!etcd.ready(t)) return;
  const p = prefix();
  const counter = join(tmp.dir, `${p.slice(0, -1)}.count`);
  writeFileSync(counter, '0');
  const procs = Number(process.env.TOWNLOCK_ETCD_CLI_PROCS ?? 6);
  // Without the lock, the sleep between read and write loses increments (see the control below).
  const script = `n=$(cat "${counter}"); sleep 0.05; echo $((n + 1)) > "${counter}"`;
  const all = (argv: string[]) =>
    Promise.all(
      Array.from(
        { length: procs },
        () =>
          new Promise<number | null>((done) =>
            spawn(argv[0]!, argv.slice(1), { stdio: 'ignore' }).on('close', done),
          ),
      ),
    );
  const locked = await all([
    process.execPath,
    BIN,
    'lock',
    'run',
    '--etcd',
    target(p),
    'counter',
    '-c',
    script,
  ]);
  assert.deepEqual(locked, Array(procs).fill(0));
  assert.equal(readFileSync(counter, 'utf8').trim(), String(procs));
  // Control: the same increments without the lock, all at once, lose some.
  writeFileSync(counter, '0');
  assert.deepEqual(await all(['sh', '-c', script]), Array(procs).fill(0));
  assert.ok(Number(readFileSync(counter, 'utf8')) < procs, 'the control loses increments');
});

test('-n and -w on a busy lock exit 1 (or -E); shared holders coexist; TOWNLOCK_ETCD is used', {
  timeout: 60_000,
}, async (t) => {
  if (!etcd.ready(t)) return;
  const p = prefix();
  const holder = bg(['lock', 'run', '-s', '--etcd', target(p), 'db', 'sh', '-c', 'echo held; read line']);
  await holder.waitFor('held');
  // Another shared holder gets in at once; an exclusive one does not.
  const shared = tl(['lock', 'run', '-s', '-n', '--etcd', target(p), 'db', 'echo', 'shared-too']);
  assert.equal(shared.code, 0, shared.err);
  assert.equal(shared.out, 'shared-too\n');
  const busy = tl(['lock', 'run', '-n', '--etcd', target(p), 'db', 'echo', 'never']);
  assert.equal(busy.code, 1);
  assert.equal(busy.out, '');
  assert.match(busy.err, /lock "db" on etcd is busy \[ERR_LOCK_TIMEOUT\]/);
  assert.equal(tl(['lock', 'run', '-n', '-E', '7', '--etcd', target(p), 'db', 'true']).code, 7);
  const timed = tl(['lock', 'run', '-w', '0.2', 'db', 'true'], { TOWNLOCK_ETCD: target(p) });
  assert.equal(timed.code, 1);
  assert.match(
    timed.err,
    /^townlock: lock "db" on etcd is busy: no turn within \d+ ms \[ERR_LOCK_TIMEOUT\]\n$/,
  );
  assert.equal(existsSync(join(tmp.dir, '.gastown')), false, 'no file lock was taken');
  holder.send('done');
  assert.equal(await holder.exited(), 0);
  // Released: the command's status is townlock's.
  assert.equal(tl(['lock', 'run', '--etcd', target(p), 'db', 'sh', '-c', 'exit 3']).code, 3);
});

test('a signal while waiting for the etcd lock ends the wait with 128+N, without running the command', {
  timeout: 60_000,
}, async (t) => {
  if (!etcd.ready(t)) return;
  const p = prefix();
  const holder = bg(['lock', 'run', '--etcd', target(p), 'job', 'sh', '-c', 'echo held; read line']);
  await holder.waitFor('held');
  const waiter = bg(['lock', 'run', '--etcd', target(p), 'job', 'echo', 'ran']);
  // The waiter is queued once its key is in etcd: two keys under the lock's prefix.
  const locks = `${p}locks/job/`;
  for (;;) {
    const { kvs } = await raw.range({ key: locks, rangeEnd: prefixEnd(locks) });
    if (kvs.length >= 2) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  waiter.proc.kill('SIGTERM');
  assert.equal(await waiter.exited(), 143);
  assert.deepEqual(waiter.lines, []);
  holder.send('done');
  assert.equal(await holder.exited(), 0);
});

test('lock lost while the command runs: SIGTERM, SIGKILL after --kill-after, exit 75', {
  timeout: 60_000,
}, async (t) => {
  if (!etcd.ready(t)) return;
  const p = prefix();
  // A command that ignores SIGTERM (it says so), so that only the SIGKILL ends it.
  const holder = bg([
    'lock',
    'run',
    '--kill-after',
    '0.5',
    '--etcd',
    target(p),
    'job',
    'sh',
    '-c',
    'trap "echo got-term" TERM; echo held; while :; do sleep 0.05; done',
  ]);
  await holder.waitFor('held');
  const locks = `${p}locks/job/`;
  const { kvs } = await raw.range({ key: locks, rangeEnd: prefixEnd(locks) });
  assert.equal(kvs.length, 1);
  await raw.leaseRevoke(kvs[0]!.lease); // what a lease expiry does, at once
  await holder.waitForErr(/was lost: .*\[ERR_LOCK_LOST\]/);
  await holder.waitFor('got-term');
  assert.equal(await holder.exited(), 75);
  assert.match(
    holder.stderr(),
    /sending SIGTERM to the command \(pid \d+\)( and the \d+ process(es)? it started)?; SIGKILL in 0.5 s/,
  );
  // Someone else can take the lock now.
  assert.equal(tl(['lock', 'run', '-n', '--etcd', target(p), 'job', 'true']).code, 0);
});

/** Whether a process runs (a zombie, waiting for a parent that may never reap it, does not). */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

test('lock lost: the processes the command started are stopped too, also those ignoring SIGTERM', {
  timeout: 60_000,
}, async (t) => {
  if (!etcd.ready(t)) return;
  const p = prefix();
  const script = join(tmp.dir, `${p.slice(0, -1)}.sh`);
  // Every process of the tree ignores SIGTERM (an ignored signal stays ignored across fork and exec).
  writeFileSync(
    script,
    'trap "" TERM\nsleep 30 &\necho "bg $!"\nsleep 31 &\necho "fg $!"\necho held\nwait\n',
  );
  const holder = bg(['lock', 'run', '--kill-after', '0.5', '--etcd', target(p), 'job', 'sh', script]);
  await holder.waitFor('held');
  const pids = holder.lines.filter((l) => /^(bg|fg) \d+$/.test(l)).map((l) => Number(l.split(' ')[1]));
  assert.equal(pids.length, 2);
  assert.ok(pids.every(running));
  const locks = `${p}locks/job/`;
  const { kvs } = await raw.range({ key: locks, rangeEnd: prefixEnd(locks) });
  await raw.leaseRevoke(kvs[0]!.lease);
  assert.equal(await holder.exited(), 75);
  assert.match(holder.stderr(), /and the 2 processes it started; SIGKILL in 0.5 s/);
  assert.deepEqual(pids.filter(running), [], 'no process of the command outlives townlock');
});

test('a lost lock whose command exits on SIGTERM: exit 75 all the same', { timeout: 60_000 }, async (t) => {
  if (!etcd.ready(t)) return;
  const p = prefix();
  const holder = bg(['lock', 'run', '--etcd', target(p), 'job', 'sh', '-c', 'echo held; exec sleep 30']);
  await holder.waitFor('held');
  const locks = `${p}locks/job/`;
  const { kvs } = await raw.range({ key: locks, rangeEnd: prefixEnd(locks) });
  await raw.leaseRevoke(kvs[0]!.lease);
  assert.equal(await holder.exited(), 75);
});

test('an endpoint that speaks HTTP/2 but is not etcd: ERR_ETCD_REQUEST, exit 69, never a raw client error', async (t) => {
  if (!etcd.ready(t)) return;
  const server = createServer((_req, res) => {
    res.writeHead(404);
    res.end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  try {
    const cli = await new Promise<{ code: number | null; err: string }>((done) => {
      const p = spawn(
        process.execPath,
        [BIN, 'lock', 'run', '--etcd', `127.0.0.1:${port}/x`, 'job', 'true'],
        {
          stdio: ['ignore', 'ignore', 'pipe'],
        },
      );
      let err = '';
      p.stderr.setEncoding('utf8').on('data', (c: string) => {
        err += c;
      });
      p.on('close', (code) => done({ code, err }));
    });
    assert.equal(cli.code, 69, cli.err);
    assert.match(cli.err, /^townlock: etcd at 127\.0\.0\.1:\d+ refused .*\[ERR_ETCD_REQUEST\]\n$/);
    const { Etcd } = await import('../../src/etcd/index.js');
    await assert.rejects(Etcd.connect({ endpoints: [`127.0.0.1:${port}`] }), { code: 'ERR_ETCD_REQUEST' });
  } finally {
    server.close();
  }
});

test('etcd unreachable is 75; bad arguments are usage errors (64) that name the fix', (t) => {
  if (!etcd.ready(t)) return;
  const down = tl(['lock', 'run', '--etcd', '127.0.0.1:1/x', 'job', 'echo', 'ran']);
  assert.equal(down.code, 75);
  assert.equal(down.out, '');
  assert.match(down.err, /etcd unavailable at 127\.0\.0\.1:1.*\[ERR_ETCD_UNAVAILABLE\]/);
  const cases: [string[], RegExp][] = [
    [['--etcd', 'nohost', 'job', 'true'], /"nohost" .* is not an etcd endpoint HOST:PORT/],
    [['--etcd', '127.0.0.1:99999', 'job', 'true'], /is not an etcd endpoint/],
    [['--etcd', '', 'job', 'true'], /--etcd needs ENDPOINTS/],
    [['--etcd', target('x'), '-L', 'job', 'true'], /--lock-file does not apply to --etcd/],
    [['--etcd', target('x'), 'job'], /missing COMMAND/],
    [['--etcd', target('x')], /missing NAME/],
    [
      ['--etcd', target('x'), '--kill-after', 'soon', 'job', 'true'],
      /--kill-after needs a number of seconds/,
    ],
    [['--kill-after', '1', 'f', 'true'], /--kill-after applies only with --etcd/],
    [['--etcd', 'https://127.0.0.1:2379', 'job', 'true'], /TLS \(https\) is not supported yet/],
  ];
  for (const [args, message] of cases) {
    const r = tl(['lock', 'run', ...args]);
    assert.equal(r.code, 64, `${args.join(' ')}: ${r.err}`);
    assert.match(r.err, message);
  }
  assert.match(tl(['lock', 'run', 'job', 'true'], { TOWNLOCK_ETCD: 'bad' }).err, /TOWNLOCK_ETCD: "bad"/);
  // http:// endpoints as etcdctl takes them; an empty TOWNLOCK_ETCD turns etcd off for one command.
  assert.equal(tl(['lock', 'run', '--etcd', `http://${target('h')}`, 'job', 'true']).code, 0);
  const file = tl(['lock', 'run', join(tmp.dir, 'plain.json'), 'true'], { TOWNLOCK_ETCD: '' });
  assert.equal(file.code, 0, file.err);
});
