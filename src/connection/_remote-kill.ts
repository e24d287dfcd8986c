/**
 * Killing a remote command (exec's timeout and abort) without relying on the SSH server.
 *
 * The RFC 4254 "signal" channel request does not do it: ssh2 silently drops the request once the
 * channel's stdin has been ended (exec ends it at once, or when its input stream ends), and OpenSSH
 * before 9.8 refuses it for root logins ("session signalling requires privilege separation":
 * privsep_postauth turns privilege separation off for uid 0). Closing the channel does not do it
 * either: sshd keeps a session whose child still runs ("delay detach") and sends a non-tty command no
 * signal.
 *
 * So the command line first reports the remote shell's pid on stderr, behind a marker carrying a random
 * nonce (removed from the stderr exec returns or streams: {@link MarkerFilter}), from a `/bin/sh` the
 * login shell execs. sshd's session child calls setsid() before it starts the shell, and the command
 * replaces the shell (`exec`), so that pid is also the process group of the command and of every child
 * it starts. On timeout or abort a second exec channel runs
 * `kill -s KILL -- -PGID` (falling back to the pid alone where the group does not exist), then the
 * command's channel is closed.
 *
 * Guaranteed: the command and every process still in its process group receive SIGKILL, provided the
 * server runs our command line (no ForceCommand) and the marker arrived within {@link PID_WAIT_MS} of the
 * channel opening. Not guaranteed: processes that left the group (setsid, daemons) survive; without the
 * marker only the channel is closed, and the command may run on.
 */
import type { Client, ClientChannel } from 'ssh2';
import { shellQuote } from './_exec.js';

/** How long after the channel opened the pid marker may take to arrive (shell start-up, rc files). */
export const PID_WAIT_MS = 10_000;
/** How long the kill command itself may take before we give up on it and just close the channel. */
const KILL_WAIT_MS = 10_000;

/** The marker's first bytes: ASCII RS, which no text prints by accident, and a fixed tag. */
const TAG = '\x1etownlock-pid-';

/**
 * The line the login shell runs: `exec /bin/sh -c '...'`, where sh first reports its pid on stderr behind
 * the marker for `nonce`, then runs `line`. Both shells `exec`, so the pid stays the session's; and `line`
 * (and `$$`) are read by a POSIX sh whatever the user's login shell is (fish has no `$$`).
 */
export function reportingPid(line: string, nonce: string): string {
  if (!/^[0-9a-f]+$/.test(nonce)) throw new Error('nonce must be hex');
  return `exec /bin/sh -c ${shellQuote(`printf '\\036townlock-pid-${nonce}:%s\\n' "$$" >&2; ${line}`)}`;
}

/** Watches a remote command's stderr for the pid marker of one exec, and strips it from the result. */
export class PidMarker {
  /** Resolves with the remote pid once the marker has been seen (never rejects). */
  readonly pid: Promise<number>;
  readonly #marker: string;
  readonly #pattern: RegExp;
  #seen = '';
  #found = false;
  #resolve!: (pid: number) => void;

  constructor(nonce: string) {
    if (!/^[0-9a-f]+$/.test(nonce)) throw new Error('nonce must be hex');
    this.#marker = `${TAG}${nonce}:`;
    // The tag, a hex nonce and ':': nothing special in a RegExp.
    this.#pattern = new RegExp(`${this.#marker}(\\d+)\\n`);
    this.pid = new Promise<number>((resolve) => {
      this.#resolve = resolve;
    });
  }

  /** Feeds one chunk of stderr (chunks may split the marker anywhere). */
  feed = (chunk: Buffer): void => {
    if (this.#found) return;
    this.#seen += chunk.toString('latin1');
    const m = this.#pattern.exec(this.#seen);
    if (m) {
      this.#found = true;
      this.#seen = '';
      this.#resolve(Number(m[1]));
    } else if (this.#seen.length > 64 * 1024) {
      // Output before the marker (rc files) can be long; only a tail can still hold a partial marker.
      this.#seen = this.#seen.slice(-256);
    }
  };

  /** `stderr` without the marker line (the first one carrying this nonce; anything else is left alone). */
  strip(stderr: Buffer): Buffer {
    const filter = this.filter();
    return Buffer.concat([filter.pass(stderr), filter.end()]);
  }

  /** A filter that removes this marker's line from stderr as it streams (one per stream). */
  filter(): MarkerFilter {
    return new MarkerFilter(this.#marker);
  }
}

/** The most digits a pid can have in the marker line (pid_t is at most 64 bits). */
const MAX_PID_DIGITS = 20;

/**
 * Removes the pid marker line from stderr chunk by chunk, without delaying anything else: bytes before
 * the marker pass as soon as they cannot be its beginning, and once the marker line has passed, every
 * chunk is returned as it is (the same Buffer). At most one marker line's worth of bytes
 * (`marker` + 20 digits + newline) is ever held back. Only the first complete marker line is removed;
 * something that starts like the marker but is not followed by digits and a newline is passed on.
 */
export class MarkerFilter {
  readonly #marker: Buffer;
  #held: Buffer = Buffer.alloc(0);
  #passed = false;

  constructor(marker: string) {
    this.#marker = Buffer.from(marker, 'latin1');
  }

  /** Feeds one chunk; returns the bytes that can be passed on now (possibly none). */
  pass(chunk: Buffer): Buffer {
    if (this.#passed) return chunk;
    let buf = this.#held.length > 0 ? Buffer.concat([this.#held, chunk]) : chunk;
    this.#held = Buffer.alloc(0);
    const out: Buffer[] = [];
    for (;;) {
      const at = buf.indexOf(this.#marker);
      if (at < 0) {
        const keep = this.#partialAtEnd(buf);
        out.push(buf.subarray(0, buf.length - keep));
        this.#held = Buffer.from(buf.subarray(buf.length - keep));
        break;
      }
      const digits = at + this.#marker.length;
      let i = digits;
      while (i < buf.length && i - digits < MAX_PID_DIGITS && buf[i]! >= 0x30 && buf[i]! <= 0x39) i++;
      if (i === buf.length) {
        // The line may still be complete in the next chunk.
        out.push(buf.subarray(0, at));
        this.#held = Buffer.from(buf.subarray(at));
        break;
      }
      if (buf[i] === 0x0a && i > digits) {
        this.#passed = true;
        out.push(buf.subarray(0, at), buf.subarray(i + 1));
        break;
      }
      // Looked like the marker but is not its line: pass its first byte on and look further.
      out.push(buf.subarray(0, at + 1));
      buf = buf.subarray(at + 1);
    }
    return out.length === 1 ? out[0]! : Buffer.concat(out);
  }

  /** At the end of stderr: what is still held back (the start of a marker that never completed). */
  end(): Buffer {
    const rest = this.#held;
    this.#held = Buffer.alloc(0);
    return rest;
  }

  /** How many bytes at the end of `buf` are a proper beginning of the marker (so must wait). */
  #partialAtEnd(buf: Buffer): number {
    for (let k = Math.min(this.#marker.length - 1, buf.length); k > 0; k--) {
      if (buf.subarray(buf.length - k).equals(this.#marker.subarray(0, k))) return k;
    }
    return 0;
  }
}

/** The shell line that SIGKILLs process group `pid`, or the process alone where no such group exists. */
export function killGroupLine(pid: number): string {
  if (!Number.isInteger(pid) || pid <= 1) throw new Error(`not a pid: ${pid}`);
  return `kill -s KILL -- -${pid} 2>/dev/null || kill -s KILL ${pid}`;
}

/**
 * Kills the command running on `channel`: waits for its pid (until `openedAt + PID_WAIT_MS`, or until the
 * channel closes by itself), SIGKILLs its process group over a second channel of `client`, then closes
 * `channel`. Never rejects.
 */
export async function killRemote(
  client: Client,
  channel: ClientChannel,
  marker: PidMarker,
  openedAt: number,
): Promise<void> {
  let closed = false;
  const onClose = new Promise<undefined>((resolve) =>
    channel.once('close', () => {
      closed = true;
      resolve(undefined);
    }),
  );
  const pid = await firstOf([marker.pid, onClose], openedAt + PID_WAIT_MS - performance.now());
  if (pid !== undefined && !closed) await firstOf([run(client, killGroupLine(pid))], KILL_WAIT_MS);
  // Frees the session slot; a command still alive at this point (no marker) is beyond our reach.
  channel.close();
}

/** Runs `line` on a new channel of `client` and resolves when it ends (never rejects). */
function run(client: Client, line: string): Promise<void> {
  return new Promise<void>((resolve) => {
    try {
      client.exec(line, (err, ch) => {
        if (err) return resolve();
        ch.on('close', () => resolve());
        ch.resume();
        ch.stderr.resume();
        ch.end();
      });
    } catch {
      resolve(); // not connected any more: the session is gone with the connection
    }
  });
}

/** The first of `promises` to resolve, or undefined after `ms` (at once if `ms` <= 0). */
function firstOf<T>(promises: Promise<T>[], ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<undefined>((resolve) => {
    timer = setTimeout(resolve, Math.max(0, ms), undefined);
  });
  return Promise.race([...promises, deadline]).finally(() => clearTimeout(timer));
}
