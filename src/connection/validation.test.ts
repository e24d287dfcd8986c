/**
 * Every public method of both connection classes rejects a bad argument with ERR_INVALID_OPTION naming
 * it, before touching the machine: never a raw TypeError, never Node's ERR_INVALID_ARG_TYPE. The SSH
 * connection points at a closed port, so an argument that slipped through would fail to connect instead.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { scratchDir } from '../../test/scratch-dir.js';
import type { Connection } from './connection.js';
import { LocalConnection } from './local.js';
import { SshConnection } from './ssh.js';

const dir = scratchDir('townlock-validate-');
const file = join(dir, 'f');

/** One bad call and the argument its error must name. */
type Row = [label: string, call: (c: Connection) => Promise<unknown>, name: string];
// Arguments deliberately of the wrong type, as a JavaScript caller could pass them.
// biome-ignore lint/suspicious/noExplicitAny: the point is to bypass the types
const bad = (v: unknown): any => v;

const rows: Row[] = [
  ['readFile(42)', (c) => c.readFile(bad(42)), 'path'],
  ["readFile('')", (c) => c.readFile(''), 'path'],
  ['readFile(NUL)', (c) => c.readFile('a\0b'), 'path'],
  ['writeFile(42, x)', (c) => c.writeFile(bad(42), 'x'), 'path'],
  ['writeFile(f, 42)', (c) => c.writeFile(file, bad(42)), 'data'],
  ['writeFile(f, x, null)', (c) => c.writeFile(file, 'x', bad(null)), 'options'],
  ["writeFile(f, x, {mode: 'rw'})", (c) => c.writeFile(file, 'x', { mode: bad('rw') }), 'mode'],
  ['writeFile(f, x, {mode: 0o10000})', (c) => c.writeFile(file, 'x', { mode: 0o10000 }), 'mode'],
  ['mkdir(null)', (c) => c.mkdir(bad(null)), 'path'],
  ['remove({})', (c) => c.remove(bad({})), 'path'],
  ['removeAll(undefined)', (c) => c.removeAll(bad(undefined)), 'path'],
  ['stat([])', (c) => c.stat(bad([])), 'path'],
  ['exists(1)', (c) => c.exists(bad(1)), 'path'],
  ['glob(5)', (c) => c.glob(bad(5)), 'pattern'],
  ["glob('')", (c) => c.glob(''), 'pattern'],
  ["exec('')", (c) => c.exec(''), 'command'],
  ['exec(42)', (c) => c.exec(bad(42)), 'command'],
  ['exec(NUL)', (c) => c.exec('tr\0ue'), 'command'],
  ["exec(true, 'x')", (c) => c.exec('true', bad('x')), 'args'],
  ["exec(true, ['a', 1])", (c) => c.exec('true', bad(['a', 1])), 'args[1]'],
  ["exec(true, ['a\\0'])", (c) => c.exec('true', ['a\0']), 'args[0]'],
  ['exec(true, [], null)', (c) => c.exec('true', [], bad(null)), 'options'],
  ['exec timeout 0', (c) => c.exec('true', [], { timeout: 0 }), 'timeout'],
  ['exec timeout -5', (c) => c.exec('true', [], { timeout: -5 }), 'timeout'],
  ['exec timeout NaN', (c) => c.exec('true', [], { timeout: Number.NaN }), 'timeout'],
  ['exec timeout Infinity', (c) => c.exec('true', [], { timeout: Number.POSITIVE_INFINITY }), 'timeout'],
  ["exec timeout '100'", (c) => c.exec('true', [], { timeout: bad('100') }), 'timeout'],
  ['exec cwd 42', (c) => c.exec('true', [], { cwd: bad(42) }), 'cwd'],
  ["exec cwd ''", (c) => c.exec('true', [], { cwd: '' }), 'cwd'],
  ["exec env 'A=1'", (c) => c.exec('true', [], { env: bad('A=1') }), 'env'],
  ['exec env {A: 1}', (c) => c.exec('true', [], { env: bad({ A: 1 }) }), 'env.A'],
  ['exec env {A: NUL}', (c) => c.exec('true', [], { env: { A: 'x\0' } }), 'env.A'],
  ["exec env {'BAD NAME'}", (c) => c.exec('true', [], { env: { 'BAD NAME': '1' } }), 'env'],
  ['exec input 42', (c) => c.exec('true', [], { input: bad(42) }), 'input'],
  ['exec input {}', (c) => c.exec('true', [], { input: bad({ on() {} }) }), 'input'],
  ['exec input [bytes]', (c) => c.exec('true', [], { input: bad([1, 2]) }), 'input'],
  ["exec onStdout 'x'", (c) => c.exec('true', [], { onStdout: bad('x') }), 'onStdout'],
  ['exec onStdout {}', (c) => c.exec('true', [], { onStdout: bad({}) }), 'onStdout'],
  ['exec onStderr null', (c) => c.exec('true', [], { onStderr: bad(null) }), 'onStderr'],
  ['exec signal {}', (c) => c.exec('true', [], { signal: bad({ aborted: false }) }), 'signal'],
  ["tmuxNewSession('')", (c) => c.tmuxNewSession(''), 'name'],
  ['tmuxNewSession(5)', (c) => c.tmuxNewSession(bad(5)), 'name'],
  ['tmuxNewSession(s, null)', (c) => c.tmuxNewSession('s', bad(null)), 'options'],
  ['tmuxNewSession cwd 1', (c) => c.tmuxNewSession('s', { cwd: bad(1) }), 'cwd'],
  ['tmuxNewSession command 1', (c) => c.tmuxNewSession('s', { command: bad(1) }), 'command'],
  ['tmuxKillSession(undefined)', (c) => c.tmuxKillSession(bad(undefined)), 'name'],
  ["tmuxSendKeys(1, 'x')", (c) => c.tmuxSendKeys(bad(1), 'x'), 'session'],
  ["tmuxSendKeys('s', 1)", (c) => c.tmuxSendKeys('s', bad(1)), 'keys'],
  ["tmuxSendKeys enter 'yes'", (c) => c.tmuxSendKeys('s', 'x', { enter: bad('yes') }), 'enter'],
  ["tmuxCapturePane('')", (c) => c.tmuxCapturePane(''), 'session'],
  ['tmuxHasSession(null)', (c) => c.tmuxHasSession(bad(null)), 'name'],
];

const kinds: [string, () => Connection][] = [
  ['LocalConnection', () => new LocalConnection()],
  [
    'SshConnection',
    () =>
      new SshConnection({
        host: 'nobody@127.0.0.1:1',
        knownHostsPath: join(dir, 'known_hosts'),
        connectTimeout: 2000,
        sshConfigPath: false,
      }),
  ],
];

for (const [kind, make] of kinds) {
  describe(`${kind}: bad arguments`, () => {
    for (const [label, call, name] of rows) {
      test(label, { timeout: 10_000 }, async () => {
        const conn = make();
        let promise: Promise<unknown>;
        try {
          promise = call(conn);
        } catch (err) {
          assert.fail(`${label} threw synchronously instead of rejecting: ${err}`);
        }
        await assert.rejects(promise, (err: Error & { code?: string }) => {
          assert.equal(err.code, 'ERR_INVALID_OPTION', `${label}: ${err.message}`);
          assert.equal(err.name, 'InvalidOptionError');
          assert.ok(err.message.includes(`option ${name}:`), `${label} should name ${name}: ${err.message}`);
          return true;
        });
        await conn.close();
      });
    }
  });
}

describe('constructors: bad options', () => {
  // biome-ignore lint/suspicious/noExplicitAny: the point is to bypass the types
  const ssh = (o: Record<string, unknown>) => new SshConnection({ host: 'h', ...o } as any);
  const cases: [string, () => unknown, string][] = [
    ['SshConnection(null)', () => new SshConnection(bad(null)), 'options'],
    ['host 42', () => ssh({ host: 42 }), 'host'],
    ['keyPath 5', () => ssh({ keyPath: 5 }), 'keyPath'],
    ['passphrase 5', () => ssh({ passphrase: 5 }), 'passphrase'],
    ['knownHostsPath 5', () => ssh({ knownHostsPath: 5 }), 'knownHostsPath'],
    ["hostKeyPolicy 'yes'", () => ssh({ hostKeyPolicy: 'yes' }), 'hostKeyPolicy'],
    ['connectTimeout -1', () => ssh({ connectTimeout: -1 }), 'connectTimeout'],
    ["keepaliveInterval 'x'", () => ssh({ keepaliveInterval: 'x' }), 'keepaliveInterval'],
    ['sshConfigPath 5', () => ssh({ sshConfigPath: 5 }), 'sshConfigPath'],
    ['sshConfigPath true', () => ssh({ sshConfigPath: true }), 'sshConfigPath'],
    ['tmuxSocket 5', () => ssh({ tmuxSocket: 5 }), 'tmuxSocket'],
    ["name ''", () => ssh({ name: '' }), 'name'],
    ['LocalConnection(null)', () => new LocalConnection(bad(null)), 'options'],
    ['LocalConnection tmuxSocket 5', () => new LocalConnection({ tmuxSocket: bad(5) }), 'tmuxSocket'],
    ['LocalConnection name 5', () => new LocalConnection({ name: bad(5) }), 'name'],
  ];
  for (const [label, make, name] of cases) {
    test(label, () => {
      assert.throws(make, (err: Error & { code?: string }) => {
        assert.equal(err.code, 'ERR_INVALID_OPTION', `${label}: ${err.message}`);
        assert.ok(err.message.includes(`option ${name}:`), `${label} should name ${name}: ${err.message}`);
        return true;
      });
    });
  }
});
