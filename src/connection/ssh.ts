/**
 * SshConnection: a machine reached over SSH with the pure-JavaScript ssh2 client.
 *
 * - One TCP/SSH connection per SshConnection, opened on first use and reused for every operation (one
 *   SFTP session, one channel per exec), with keep-alives; close() ends it cleanly.
 * - The host may be a `Host` alias of ~/.ssh/config (HostName, User, Port, IdentityFile; _ssh-target.ts
 *   says what wins over what); the file is read at each connect.
 * - Host keys are checked against known_hosts (default ~/.ssh/known_hosts) for the real host name and
 *   port, as OpenSSH does (_known-hosts.ts); an unknown or changed key is refused, unless
 *   `hostKeyPolicy: 'accept-new'` trusts the first key of a host that has none (never a changed or an
 *   additional one). ssh2 is asked to negotiate the key types known_hosts lists for the host first.
 * - Files go over SFTP; writeFile writes a temp file, fsyncs it and renames it over the target with
 *   OpenSSH's posix-rename extension, so readers never see a partial file.
 * - exec quotes every argument for the remote shell, so spaces, quotes, `;`, `$(...)` and newlines
 *   arrive literally; a POSIX /bin/sh runs the command line, whatever the login shell is.
 * - exec's timeout and abort reject at once and SIGKILL the remote command's process group through a
 *   second channel (_remote-kill.ts says why the SSH "signal" request is not enough); close() waits for
 *   those kills.
 * - If the connection drops, every pending operation rejects with a `closed` ConnectionError; the next
 *   operation reconnects.
 * - ssh2 is imported when the first connection is opened, not before: constructing an SshConnection (or
 *   importing townlock) loads none of it (test/lazy-load.test.ts).
 */
import { posix } from 'node:path';
// Types only: ssh2 itself (~100 ms of module loading) is imported when a connection is first opened, so
// `import 'townlock'` and every CLI command that opens no SSH connection never load it.
import type { Client, ClientChannel, ConnectConfig, FileEntry, SFTPWrapper, Stats } from 'ssh2';
import { crypto } from '../_crypto.js';
import { BaseConnection, type BaseConnectionOptions } from './_base.js';
import { abortedError, collectExec, remoteCommandLine } from './_exec.js';
import type { DirEntry } from './_glob.js';
import { knownKeyTypes, preferredHostKeyAlgorithms, verifyHostKey } from './_known-hosts.js';
import { killRemote, PidMarker, reportingPid } from './_remote-kill.js';
import { SshConfigError } from './_ssh-config.js';
import { checkSshOptions, credentials, expandHome, keyErrorMessage, parseSshHost } from './_ssh-options.js';
import { type SshTarget, sshTarget } from './_ssh-target.js';
import { checkExec, checkString, checkWriteFile } from './_validate.js';
import type { ExecOptions, ExecResult, FileStat } from './connection.js';
import { ConnectionError, NotFoundError, PermissionError } from './errors.js';

export { parseSshHost };

/** The longest delay a plain setTimeout honours. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Options for {@link SshConnection}. */
export interface SshConnectionOptions extends BaseConnectionOptions {
  /** `[user@]host[:port]`; host may be an alias from the ssh config (see `sshConfigPath`). */
  host: string;
  /**
   * Private key file; `~` is expanded.
   * @default the ssh config's first readable IdentityFile, else the SSH agent, else ~/.ssh/id_ed25519, id_ecdsa, id_rsa
   */
  keyPath?: string;
  /** Passphrase of the key. @default $TOWNLOCK_SSH_PASSPHRASE */
  passphrase?: string;
  /**
   * OpenSSH client config whose `Host` blocks may define `host` as an alias (HostName, User, Port,
   * IdentityFile); `user@`, `:port` and `keyPath` given here win over it. `false` or `''`: none; a missing
   * file is fine. @default $TOWNLOCK_SSH_CONFIG, else ~/.ssh/config
   */
  sshConfigPath?: string | false;
  /** known_hosts file, checked for the real host name and port. @default $TOWNLOCK_KNOWN_HOSTS, else ~/.ssh/known_hosts */
  knownHostsPath?: string;
  /**
   * `strict` refuses hosts not in known_hosts; `accept-new` records the key of a host that has no key there
   * yet (trust on first use), never a changed or additional key of a known host. @default 'strict'
   */
  hostKeyPolicy?: 'strict' | 'accept-new';
  /** How long connecting (TCP + handshake + auth) may take, in ms. @default 20000 */
  connectTimeout?: number;
  /** Keep-alive interval in ms (0 disables). @default 15000 */
  keepaliveInterval?: number;
}

/** A machine reached over SSH. */
export class SshConnection extends BaseConnection {
  readonly isLocal = false;
  readonly #options: SshConnectionOptions;
  #client: Promise<Client> | undefined;
  /** The connected client behind #client, once ready; lets a drop forget it synchronously. */
  #live: Client | undefined;
  #sftp: Promise<SFTPWrapper> | undefined;
  readonly #pending = new Set<(err: Error) => void>();
  /** Kills of timed-out or aborted commands still under way (close() waits for them). */
  readonly #kills = new Set<Promise<void>>();
  #closed = false;

  constructor(options: SshConnectionOptions) {
    checkSshOptions(options);
    parseSshHost(options.host); // a malformed host spec fails here, not at the first operation
    super(options.name ?? options.host, options);
    this.#options = options;
  }

  async readFile(path: string): Promise<Buffer> {
    checkString('path', path);
    const sftp = await this.#sftpSession('readFile');
    return this.#call<Buffer>('readFile', path, (cb) => sftp.readFile(path, cb));
  }

  async writeFile(path: string, data: string | Uint8Array, options: { mode?: number } = {}): Promise<void> {
    checkWriteFile(path, data, options);
    const sftp = await this.#sftpSession('writeFile');
    const existing = await this.#call<Stats>('writeFile', path, (cb) => sftp.stat(path, cb)).catch(
      () => undefined,
    );
    const mode = options.mode ?? (existing ? existing.mode & 0o7777 : 0o600);
    const temp = posix.join(
      posix.dirname(path),
      `.${posix.basename(path)}.tmp-${crypto().randomBytes(6).toString('hex')}`,
    );
    const bytes = typeof data === 'string' ? Buffer.from(data) : Buffer.from(data);
    try {
      const handle = await this.#call<Buffer>('writeFile', temp, (cb) => sftp.open(temp, 'wx', { mode }, cb));
      try {
        let offset = 0;
        while (offset < bytes.length) {
          const n = Math.min(32 * 1024, bytes.length - offset);
          await this.#call('writeFile', temp, (cb) =>
            sftp.write(handle, bytes, offset, n, offset, (e?: Error | null) => cb(e)),
          );
          offset += n;
        }
        await this.#call('writeFile', temp, (cb) => sftp.fchmod(handle, mode, cb));
        await this.#call('writeFile', temp, (cb) => sftp.ext_openssh_fsync(handle, cb)).catch(() => {});
      } finally {
        await this.#call('writeFile', temp, (cb) => sftp.close(handle, cb)).catch(() => {});
      }
      await this.#call('writeFile', path, (cb) => sftp.ext_openssh_rename(temp, path, cb));
    } catch (err) {
      await this.#call('writeFile', temp, (cb) => sftp.unlink(temp, cb)).catch(() => {});
      throw err;
    }
  }

  async mkdir(path: string): Promise<void> {
    checkString('path', path);
    const sftp = await this.#sftpSession('mkdir');
    const parts = path.split('/');
    for (let i = 1; i <= parts.length; i++) {
      const prefix = parts.slice(0, i).join('/');
      if (prefix === '' || prefix === '.') continue;
      const s = await this.#call<Stats>('mkdir', prefix, (cb) => sftp.stat(prefix, cb)).catch(
        () => undefined,
      );
      if (s?.isDirectory()) continue;
      await this.#call('mkdir', prefix, (cb) => sftp.mkdir(prefix, cb)).catch(async (err) => {
        const again = await this.#call<Stats>('mkdir', prefix, (cb) => sftp.stat(prefix, cb)).catch(
          () => undefined,
        );
        if (!again?.isDirectory()) throw err; // a racing creator is fine; anything else is not
      });
    }
  }

  async remove(path: string): Promise<void> {
    checkString('path', path);
    const sftp = await this.#sftpSession('remove');
    const s = await this.#call<Stats>('remove', path, (cb) => sftp.lstat(path, cb));
    await this.#call('remove', path, (cb) =>
      s.isDirectory() ? sftp.rmdir(path, cb) : sftp.unlink(path, cb),
    );
  }

  async removeAll(path: string): Promise<void> {
    checkString('path', path);
    const sftp = await this.#sftpSession('removeAll');
    const s = await this.#call<Stats>('removeAll', path, (cb) => sftp.lstat(path, cb)).catch((err) => {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    });
    if (!s) return;
    if (s.isDirectory()) {
      for (const e of (await this.listDir(path)) ?? []) await this.removeAll(posix.join(path, e.name));
      await this.#call('removeAll', path, (cb) => sftp.rmdir(path, cb));
    } else {
      await this.#call('removeAll', path, (cb) => sftp.unlink(path, cb));
    }
  }

  async stat(path: string): Promise<FileStat> {
    checkString('path', path);
    const sftp = await this.#sftpSession('stat');
    const s = await this.#call<Stats>('stat', path, (cb) => sftp.stat(path, cb));
    return {
      name: posix.basename(path),
      size: s.size,
      mode: s.mode,
      mtime: new Date(s.mtime * 1000),
      isDir: s.isDirectory(),
    };
  }

  protected async listDir(path: string): Promise<DirEntry[] | undefined> {
    const sftp = await this.#sftpSession('glob');
    const entries = await this.#call<FileEntry[]>('glob', path, (cb) => sftp.readdir(path, cb)).catch(
      (err) => {
        if (err instanceof ConnectionError && err.reason !== 'remote') throw err;
        return undefined;
      },
    );
    return entries?.map((e) => ({ name: e.filename, isDir: (e.attrs.mode & 0o170000) === 0o040000 }));
  }

  async exec(command: string, args: string[] = [], options: ExecOptions = {}): Promise<ExecResult> {
    checkExec(command, args, options);
    if (options.signal?.aborted) throw abortedError(this.name, options.signal);
    const client = await this.#connect('exec');
    const nonce = crypto().randomBytes(8).toString('hex');
    const line = reportingPid(remoteCommandLine(command, args, options), nonce);
    const channel = await this.#call<ClientChannel>('exec', undefined, (cb) => client.exec(line, cb));
    const openedAt = performance.now();
    const marker = new PidMarker(nonce);
    channel.stderr.on('data', marker.feed);
    const running = {
      stdin: channel,
      stdout: channel,
      stderr: channel.stderr,
      kill: () => {
        const killing = killRemote(client, channel, marker, openedAt);
        this.#kills.add(killing);
        void killing.finally(() => this.#kills.delete(killing));
      },
      on: (event: string, listener: (...a: never[]) => void) => {
        if (event === 'close') {
          // ssh2 already names the signal of an exit-signal message with the SIG prefix (`SIGTERM`).
          channel.on('close', (code: number | null | undefined, sig?: string) =>
            (listener as (c: number | null, s: string | null) => void)(code ?? null, sig ?? null),
          );
        } else channel.on(event, listener);
      },
    };
    return this.#track(collectExec(this.name, running as never, options, marker.filter()));
  }

  async close(): Promise<void> {
    this.#closed = true;
    // A command killed on timeout or abort is killed over this connection: let that finish first.
    await Promise.all([...this.#kills]);
    const client = this.#client;
    this.#client = undefined;
    this.#sftp = undefined;
    if (!client) return;
    const c = await client.catch(() => undefined);
    if (!c) return;
    await new Promise<void>((resolve) => {
      c.once('close', () => resolve());
      c.end();
    });
  }

  /** Host, port, user and keys: the host spec, then the ssh config file (read at each connect). */
  #target(): SshTarget {
    try {
      return sshTarget(this.#options);
    } catch (err) {
      if (!(err instanceof SshConfigError)) throw err;
      throw new ConnectionError(this.name, 'connect', 'connect', `bad ssh config: ${err.message}`, {
        cause: err,
      });
    }
  }

  /** The SSH connection, opened on first use (and again after it dropped). */
  #connect(operation: string): Promise<Client> {
    if (this.#closed) {
      return Promise.reject(new ConnectionError(this.name, operation, 'closed', 'the connection was closed'));
    }
    this.#client ??= this.#open().catch((err) => {
      this.#client = undefined;
      throw err;
    });
    return this.#client;
  }

  /** Opens and authenticates a new SSH connection. */
  async #open(): Promise<Client> {
    const o = this.#options;
    const { user, host, port, keyPath, identityFiles } = this.#target();
    const knownHosts = expandHome(
      o.knownHostsPath ?? process.env.TOWNLOCK_KNOWN_HOSTS ?? '~/.ssh/known_hosts',
    );
    const creds = credentials(this.name, { keyPath, identityFiles, passphrase: o.passphrase });
    const serverHostKey = preferredHostKeyAlgorithms(knownKeyTypes(knownHosts, host, port));
    let hostKeyProblem: string | undefined;
    const config: ConnectConfig = {
      host,
      port,
      username: user,
      // ssh2 uses plain timers, which Node fires at once for delays of 2^31 ms or more.
      readyTimeout: Math.min(o.connectTimeout ?? 20_000, MAX_TIMER_MS),
      keepaliveInterval: Math.min(o.keepaliveInterval ?? 15_000, MAX_TIMER_MS),
      keepaliveCountMax: 3,
      // Like OpenSSH, ask first for the host-key types known_hosts lists for this host.
      algorithms: serverHostKey ? { serverHostKey } : undefined,
      hostVerifier: (blob: Buffer) => {
        hostKeyProblem = verifyHostKey(knownHosts, host, port, o.hostKeyPolicy ?? 'strict', blob);
        return hostKeyProblem === undefined;
      },
      ...creds.auth,
    };
    const { Client } = await import('ssh2');
    return new Promise<Client>((resolve, reject) => {
      const client = new Client();
      client.once('ready', () => {
        this.#live = client;
        client.removeAllListeners('error');
        client.on('error', (err) => this.#dropped(client, err));
        client.on('close', () => this.#dropped(client, undefined));
        resolve(client);
      });
      client.once('error', (err: Error & { level?: string }) => {
        const reason = hostKeyProblem
          ? 'host-key'
          : err.level === 'client-authentication'
            ? 'auth'
            : err.level === 'client-timeout'
              ? 'timeout'
              : 'connect';
        const message =
          hostKeyProblem ??
          (reason === 'auth'
            ? `authentication as ${user} failed (check the key)`
            : `cannot connect to ${host}:${port}: ${err.message}`);
        reject(new ConnectionError(this.name, 'connect', reason, message, { cause: err }));
        client.end();
      });
      try {
        client.connect(config);
        // Without TCP_NODELAY every small SFTP request waits out Nagle + delayed ACK (~40 ms a round trip).
        client.setNoDelay(true);
      } catch (err) {
        // ssh2 parses the key synchronously: an encrypted key without (or with a wrong) passphrase lands here.
        reject(
          new ConnectionError(this.name, 'connect', 'auth', keyErrorMessage(creds.keyFile, err as Error), {
            cause: err,
          }),
        );
      }
    });
  }

  /** The connection dropped (or was closed): forget it and fail everything in flight. */
  #dropped(client: Client, err: Error | undefined): void {
    if (this.#live === client) {
      this.#live = undefined;
      this.#client = undefined;
      this.#sftp = undefined;
    }
    const reason = new ConnectionError(
      this.name,
      'connection',
      'closed',
      err ? `connection lost: ${err.message}` : 'connection closed by the server',
      { cause: err },
    );
    for (const reject of this.#pending) reject(reason);
    this.#pending.clear();
  }

  /** The SFTP session, opened on first use on the current connection. */
  #sftpSession(operation: string): Promise<SFTPWrapper> {
    this.#sftp ??= this.#connect(operation)
      .then((client) => this.#call<SFTPWrapper>(operation, undefined, (cb) => client.sftp(cb)))
      .catch((err) => {
        this.#sftp = undefined;
        throw err;
      });
    return this.#sftp;
  }

  /** Makes `p` reject if the connection drops before it settles. */
  #track<T>(p: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const onDrop = (err: Error) => reject(err);
      this.#pending.add(onDrop);
      p.then(resolve, reject).finally(() => this.#pending.delete(onDrop));
    });
  }

  /** Runs one callback-style ssh2 call, mapping SFTP status codes to NotFound/Permission errors. */
  #call<T = void>(
    operation: string,
    path: string | undefined,
    fn: (cb: (err?: Error | null, value?: T) => void) => unknown,
  ): Promise<T> {
    const p = new Promise<T>((resolve, reject) => {
      try {
        fn((err, value) => (err ? reject(this.#mapError(operation, path, err)) : resolve(value as T)));
      } catch (err) {
        reject(this.#mapError(operation, path, err as Error));
      }
    });
    return this.#track(p);
  }

  /** SFTP status 2 is "no such file", 3 "permission denied"; the rest are ConnectionErrors. */
  #mapError(operation: string, path: string | undefined, err: Error & { code?: unknown }): Error {
    if (err instanceof ConnectionError) return err;
    if (err.code === 2 && path) return new NotFoundError(this.name, operation, path, err);
    if (err.code === 3 && path) return new PermissionError(this.name, operation, path, err);
    return new ConnectionError(this.name, operation, 'remote', err.message, { cause: err, path });
  }
}
