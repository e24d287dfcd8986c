/**
 * A real OpenSSH server for tests: `sshd -D` on 127.0.0.1 on a free port, with fresh host keys and an
 * authorized client key in a temp directory, started as a child process and stopped by the test.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { type Child, killGroup, start } from '../multiprocess/helpers.js';

export const SSHD = '/usr/sbin/sshd';

/** A running test sshd. */
export interface TestSshd {
  port: number;
  /** `user@127.0.0.1:port`, as a registry host. */
  host: string;
  /** Private key the server accepts. */
  clientKey: string;
  /** A valid key the server does not accept. */
  wrongKey: string;
  /** known_hosts file that lists this server's host key. */
  knownHosts: string;
  /** The server's ed25519 host key (the one `knownHosts` lists), as a known_hosts line body (`type base64`). */
  hostKeyLine: string;
  /** The server's other host key, ecdsa-sha2-nistp256, as a known_hosts line body. */
  ecdsaHostKeyLine: string;
  child: Child;
  /** How many connections the server has accepted so far (from its log). */
  acceptedCount(): number;
  /** Kills the server and every process of its group (open sessions included). */
  kill(): void;
}

/** Asks the kernel for a free TCP port on 127.0.0.1. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Generates a key pair (ed25519 unless told) without a passphrase; returns the private key path. */
export function keygen(path: string, type: string[] = ['-t', 'ed25519']): string {
  execFileSync('ssh-keygen', ['-q', ...type, '-N', '', '-C', 'townlock-test', '-f', path]);
  return path;
}

/** Starts sshd in `dir` and waits until it listens. */
export async function startSshd(dir: string): Promise<TestSshd> {
  mkdirSync(dir, { recursive: true });
  // sshd refuses to start without its privilege separation directory.
  if (process.getuid?.() === 0 && !existsSync('/run/sshd')) mkdirSync('/run/sshd', { mode: 0o755 });
  const hostKey = keygen(join(dir, 'host_key'));
  // A second host key, of another type, for the tests of host-key algorithm preference.
  const ecdsaHostKey = keygen(join(dir, 'host_key_ecdsa'), ['-t', 'ecdsa', '-b', '256']);
  const clientKey = keygen(join(dir, 'client_key'));
  const wrongKey = keygen(join(dir, 'wrong_key'));
  writeFileSync(join(dir, 'authorized_keys'), readFileSync(`${clientKey}.pub`));
  const port = await freePort();
  const publicLine = (key: string) => readFileSync(`${key}.pub`, 'utf8').split(' ').slice(0, 2).join(' ');
  const hostKeyLine = publicLine(hostKey);
  const knownHosts = join(dir, 'known_hosts');
  writeFileSync(knownHosts, `[127.0.0.1]:${port} ${hostKeyLine}\n`);
  const config = join(dir, 'sshd_config');
  writeFileSync(
    config,
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${hostKey}`,
      `HostKey ${ecdsaHostKey}`,
      `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
      'PubkeyAuthentication yes',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'StrictModes no',
      'UsePAM no',
      'PidFile none',
      'PermitRootLogin prohibit-password',
      'Subsystem sftp internal-sftp',
      'LogLevel INFO',
      '',
    ].join('\n'),
  );
  const child = start(SSHD, ['-D', '-e', '-f', config], {}, true);
  await child.waitForErr(/Server listening on 127\.0\.0\.1 port/, 15_000);
  return {
    port,
    host: `${userInfo().username}@127.0.0.1:${port}`,
    clientKey,
    wrongKey,
    knownHosts,
    hostKeyLine,
    ecdsaHostKeyLine: publicLine(ecdsaHostKey),
    child,
    acceptedCount: () => child.errLines.filter((l) => l.includes('Accepted publickey')).length,
    kill: () => killGroup(child.proc),
  };
}
