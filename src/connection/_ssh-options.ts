/**
 * How an SshConnection finds its peer and its credentials: host specs, `~` expansion, keys, passphrases
 * and the agent, from the options and the environment.
 */
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { posix } from 'node:path';
import type { ConnectConfig } from 'ssh2';
import { InvalidOptionError } from '../errors.js';
import { checkOptionalString, checkPositiveMs } from './_validate.js';
import { ConnectionError } from './errors.js';

/** `[user@]host[:port]` split into its parts (port 22 when not given). */
export function parseSshHost(spec: string): { user: string | undefined; host: string; port: number } {
  const parsed = parseSshSpec(spec);
  return { ...parsed, port: parsed.port ?? 22 };
}

/** `[user@]host[:port]` split into its parts, undefined for the parts not given. */
export function parseSshSpec(spec: string): {
  user: string | undefined;
  host: string;
  port: number | undefined;
} {
  if (typeof spec !== 'string' || [...spec].some((c) => c < ' ' || c === '\x7f')) {
    throw new InvalidOptionError('host', spec, '[user@]host[:port] without control characters');
  }
  const m = /^(?:([^@\s]+)@)?(\[[^\]]+\]|[^:@\s[\]]+)(?::(\d+))?$/.exec(spec);
  if (!m || spec.startsWith('-')) throw new InvalidOptionError('host', spec, '[user@]host[:port]');
  const port = m[3] === undefined ? undefined : Number(m[3]);
  if (port !== undefined && (port < 1 || port > 65535))
    throw new InvalidOptionError('host', spec, 'a port from 1 to 65535');
  return { user: m[1], host: m[2]!.replace(/^\[|\]$/g, ''), port };
}

/** Validates the options of an SshConnection (the host itself is checked by {@link parseSshHost}). */
export function checkSshOptions(options: unknown): void {
  if (options === null || typeof options !== 'object' || Array.isArray(options))
    throw new InvalidOptionError('options', options, 'an object');
  const o = options as Record<string, unknown>;
  if (typeof o.host !== 'string') throw new InvalidOptionError('host', o.host, '[user@]host[:port]');
  checkOptionalString('keyPath', o.keyPath);
  checkOptionalString('knownHostsPath', o.knownHostsPath);
  if (o.passphrase !== undefined && typeof o.passphrase !== 'string')
    throw new InvalidOptionError('passphrase', o.passphrase, 'a string');
  if (o.hostKeyPolicy !== undefined && o.hostKeyPolicy !== 'strict' && o.hostKeyPolicy !== 'accept-new')
    throw new InvalidOptionError('hostKeyPolicy', o.hostKeyPolicy, "'strict' or 'accept-new'");
  if (o.sshConfigPath !== undefined && o.sshConfigPath !== false && typeof o.sshConfigPath !== 'string')
    throw new InvalidOptionError('sshConfigPath', o.sshConfigPath, "a path, or false (or '') for none");
  checkPositiveMs('connectTimeout', o.connectTimeout);
  const keepalive = o.keepaliveInterval;
  if (
    keepalive !== undefined &&
    (typeof keepalive !== 'number' || !Number.isFinite(keepalive) || keepalive < 0)
  )
    throw new InvalidOptionError('keepaliveInterval', keepalive, 'a number of ms (0 disables)');
}

/** Expands a leading `~/` to the home directory. */
export function expandHome(path: string): string {
  return path === '~' ? homedir() : path.startsWith('~/') ? posix.join(homedir(), path.slice(2)) : path;
}

/** How an SshConnection authenticates: ssh2 settings, and the key file they came from, if any. */
export interface Credentials {
  /** ssh2's privateKey + passphrase, or agent. */
  auth: Partial<ConnectConfig>;
  /** The key file read, for error messages. */
  keyFile?: string;
}

/**
 * Key, passphrase or agent: the key file the options name; else the first readable IdentityFile of the
 * ssh config; else the agent ($SSH_AUTH_SOCK); else the usual key files.
 */
export function credentials(
  machine: string,
  options: { keyPath?: string; passphrase?: string; identityFiles?: string[] },
): Credentials {
  const passphrase = options.passphrase ?? process.env.TOWNLOCK_SSH_PASSPHRASE;
  if (options.keyPath) {
    try {
      return {
        auth: { privateKey: readFileSync(expandHome(options.keyPath)), passphrase },
        keyFile: options.keyPath,
      };
    } catch (err) {
      const message = `cannot read key ${options.keyPath}: ${(err as Error).message}`;
      throw new ConnectionError(machine, 'connect', 'auth', message, { cause: err });
    }
  }
  // As ssh does, IdentityFiles that do not exist are skipped.
  const fromConfig = readFirst(options.identityFiles ?? [], passphrase);
  if (fromConfig) return fromConfig;
  if (process.env.SSH_AUTH_SOCK) return { auth: { agent: process.env.SSH_AUTH_SOCK } };
  return readFirst(['~/.ssh/id_ed25519', '~/.ssh/id_ecdsa', '~/.ssh/id_rsa'], passphrase) ?? { auth: {} };
}

/** The first of `files` that can be read, as credentials. */
function readFirst(files: string[], passphrase: string | undefined): Credentials | undefined {
  for (const file of files) {
    try {
      return { auth: { privateKey: readFileSync(expandHome(file)), passphrase }, keyFile: file };
    } catch {
      // try the next one
    }
  }
  return undefined;
}

/**
 * The message for a key ssh2 could not parse. An encrypted key without (or with a wrong) passphrase says
 * where a passphrase goes, for CLI users and for library users.
 */
export function keyErrorMessage(keyFile: string | undefined, err: Error): string {
  const what = `cannot use the key${keyFile ? ` ${keyFile}` : ''}: ${err.message.replace(/^Cannot parse privateKey: /, '')}`;
  return /passphrase/i.test(err.message)
    ? `${what} (set $TOWNLOCK_SSH_PASSPHRASE, or the passphrase option in the library)`
    : what;
}
