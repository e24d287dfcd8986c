/**
 * known_hosts checking, as OpenSSH does it: plain, bracketed `[host]:port`, wildcard, negated and hashed
 * (`|1|salt|hash`, HMAC-SHA1 of the lowercased name) host patterns, matched case-insensitively.
 *
 * - A key recorded for the host matches, whichever line records it (a host may list several keys of one
 *   type); an `@revoked` key is refused even then.
 * - A host whose recorded keys of the offered type all differ is a `mismatch` (possible man-in-the-middle).
 * - A host recorded only with keys of other types is `other-type`: never trusted and, unlike OpenSSH's
 *   interactive prompt, never added under accept-new (only a host with no key at all is new).
 * - `@cert-authority` lines are ignored: host certificates are not supported.
 */
import { appendFileSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { AlgorithmList, ServerHostKeyAlgorithm } from 'ssh2';
import { crypto } from '../_crypto.js';

/** The verdict on an offered host key. */
export type HostKeyVerdict = 'match' | 'mismatch' | 'other-type' | 'unknown' | 'revoked';

/** One known_hosts line that applies to the host being checked. */
interface Entry {
  revoked: boolean;
  type: string;
  key: string;
}

/** The key type named inside an SSH public key blob (e.g. `ssh-ed25519`). */
export function keyType(blob: Buffer): string {
  const len = blob.readUInt32BE(0);
  return blob.subarray(4, 4 + len).toString('ascii');
}

/** The name under which known_hosts records `host` on `port` (lowercased, as OpenSSH does). */
export function hostEntryName(host: string, port: number): string {
  const name = host.toLowerCase();
  return port === 22 ? name : `[${name}]:${port}`;
}

/** Checks `blob` for `host`:`port` against the known_hosts file at `file` (missing file: unknown). */
export function checkHostKey(file: string, host: string, port: number, blob: Buffer): HostKeyVerdict {
  const entries = entriesFor(file, host, port);
  const type = keyType(blob);
  const offered = blob.toString('base64');
  if (entries.some((e) => e.revoked && e.key === offered)) return 'revoked';
  const known = entries.filter((e) => !e.revoked);
  if (known.some((e) => e.key === offered)) return 'match';
  if (known.some((e) => e.type === type)) return 'mismatch';
  return known.length > 0 ? 'other-type' : 'unknown';
}

/**
 * Decides on the key `blob` that `host`:`port` offered: undefined when it is trusted (under `accept-new`
 * a host with no recorded key at all gets it recorded first), else why it is refused, for the user.
 */
export function verifyHostKey(
  file: string,
  host: string,
  port: number,
  policy: 'strict' | 'accept-new',
  blob: Buffer,
): string | undefined {
  const verdict = checkHostKey(file, host, port, blob);
  if (verdict === 'match') return undefined;
  if (verdict === 'unknown' && policy === 'accept-new') {
    rememberHostKey(file, host, port, blob);
    return undefined;
  }
  const type = keyType(blob);
  switch (verdict) {
    case 'unknown':
      return `host key ${type} of ${host}:${port} is not in ${file} (run with --accept-new-host-key, or hostKeyPolicy: 'accept-new' in the library)`;
    case 'other-type':
      return `host key ${type} of ${host}:${port} is not in ${file}, which knows this host by other keys (${knownKeyTypes(file, host, port).join(', ')}): possible man-in-the-middle, refusing (if the server's keys really changed, update ${file})`;
    case 'mismatch':
      return `host key ${type} of ${host}:${port} does not match ${file}: possible man-in-the-middle, refusing`;
    default:
      return `host key ${type} of ${host}:${port} is revoked in ${file}, refusing`;
  }
}

/** The key types recorded for `host`:`port` (revoked keys aside), in file order, each once. */
export function knownKeyTypes(file: string, host: string, port: number): string[] {
  return [...new Set(entriesFor(file, host, port).flatMap((e) => (e.revoked ? [] : [e.type])))];
}

/** Host-key algorithms ssh2 can verify for each key type known_hosts records. */
const ALGORITHMS: Record<string, ServerHostKeyAlgorithm[]> = {
  'ssh-ed25519': ['ssh-ed25519'],
  'ecdsa-sha2-nistp256': ['ecdsa-sha2-nistp256'],
  'ecdsa-sha2-nistp384': ['ecdsa-sha2-nistp384'],
  'ecdsa-sha2-nistp521': ['ecdsa-sha2-nistp521'],
  'ssh-rsa': ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'],
  'ssh-dss': ['ssh-dss'],
};

/**
 * ssh2's `algorithms.serverHostKey` setting that moves the algorithms of the known key `types` to the
 * front of its default list (`remove` runs before `prepend`), as OpenSSH prefers known host-key types; so
 * a server with several host keys presents the one we know. undefined when no known type applies.
 */
export function preferredHostKeyAlgorithms(
  types: string[],
): AlgorithmList<ServerHostKeyAlgorithm> | undefined {
  const algorithms = types.flatMap((t) => ALGORITHMS[t] ?? []);
  // `append: []` does nothing; @types/ssh2 wants all three keys although ssh2 takes any of them.
  return algorithms.length > 0 ? { remove: algorithms, prepend: algorithms, append: [] } : undefined;
}

/** Appends `host`'s key to known_hosts (trust on first use). */
export function rememberHostKey(file: string, host: string, port: number, blob: Buffer): void {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  appendFileSync(file, `${hostEntryName(host, port)} ${keyType(blob)} ${blob.toString('base64')}\n`, {
    mode: 0o600,
  });
}

/** Every known_hosts line of `file` whose patterns match `host`:`port` (none when the file is missing). */
function entriesFor(file: string, host: string, port: number): Entry[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  const name = hostEntryName(host, port);
  const entries: Entry[] = [];
  for (const raw of text.split('\n')) {
    const fields = raw.trim().split(/\s+/);
    if (fields.length < 3 || fields[0]!.startsWith('#')) continue;
    const marker = fields[0]!.startsWith('@') ? fields.shift() : undefined;
    const [patterns, type, key] = fields as [string, string, string];
    if (marker === '@cert-authority' || key === undefined || !hostMatches(patterns, name)) continue;
    entries.push({ revoked: marker === '@revoked', type, key });
  }
  return entries;
}

/** Whether a comma-separated known_hosts pattern list matches the lowercased `name` (negations win). */
function hostMatches(patterns: string, name: string): boolean {
  if (patterns.startsWith('|1|')) {
    const [, , salt, hash] = patterns.split('|');
    if (!salt || !hash) return false;
    return crypto().createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest('base64') === hash;
  }
  let matched = false;
  for (const p of patterns.split(',')) {
    const negated = p.startsWith('!');
    const body = negated ? p.slice(1) : p;
    const re = new RegExp(
      `^${body
        .replace(/[.+^${}()|[\]\\]/g, '\\$&')
        .replace(/\*/g, '.*')
        .replace(/\?/g, '.')}$`,
      'i',
    );
    if (re.test(name)) {
      if (negated) return false;
      matched = true;
    }
  }
  return matched;
}
