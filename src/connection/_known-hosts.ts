/**
 * known_hosts checking, as OpenSSH does it: plain, bracketed `[host]:port`, wildcard and hashed
 * (`|1|salt|hash`, HMAC-SHA1) host patterns; `@revoked` keys are refused. A host whose key of the offered
 * type differs from the recorded one is a mismatch (possible man-in-the-middle), never trusted.
 */
import { createHmac } from 'node:crypto';
import { appendFileSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';

/** The verdict on an offered host key. */
export type HostKeyVerdict = 'match' | 'mismatch' | 'unknown' | 'revoked';

/** The key type named inside an SSH public key blob (e.g. `ssh-ed25519`). */
export function keyType(blob: Buffer): string {
  const len = blob.readUInt32BE(0);
  return blob.subarray(4, 4 + len).toString('ascii');
}

/** The name under which known_hosts records `host` on `port`. */
export function hostEntryName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

/** Checks `blob` for `host`:`port` against the known_hosts file at `file` (missing file: unknown). */
export function checkHostKey(file: string, host: string, port: number, blob: Buffer): HostKeyVerdict {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return 'unknown';
  }
  const name = hostEntryName(host, port);
  const type = keyType(blob);
  const offered = blob.toString('base64');
  let verdict: HostKeyVerdict = 'unknown';
  for (const raw of text.split('\n')) {
    const fields = raw.trim().split(/\s+/);
    if (fields.length < 3 || fields[0]!.startsWith('#')) continue;
    const marker = fields[0]!.startsWith('@') ? fields.shift() : undefined;
    const [patterns, entryType, key] = fields as [string, string, string];
    if (marker === '@cert-authority' || !hostMatches(patterns, name)) continue;
    if (marker === '@revoked') {
      if (key === offered) return 'revoked';
      continue;
    }
    if (key === offered) verdict = verdict === 'mismatch' ? verdict : 'match';
    else if (entryType === type) verdict = 'mismatch';
  }
  return verdict;
}

/** Appends `host`'s key to known_hosts (trust on first use). */
export function rememberHostKey(file: string, host: string, port: number, blob: Buffer): void {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  appendFileSync(file, `${hostEntryName(host, port)} ${keyType(blob)} ${blob.toString('base64')}\n`, {
    mode: 0o600,
  });
}

/** Whether a comma-separated known_hosts pattern list matches `name` (negations win). */
function hostMatches(patterns: string, name: string): boolean {
  if (patterns.startsWith('|1|')) {
    const [, , salt, hash] = patterns.split('|');
    if (!salt || !hash) return false;
    return createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest('base64') === hash;
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
