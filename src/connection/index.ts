/** townlock/connection: local and SSH connections with one interface. */
export type { Connection, ExecOptions, ExecResult, FileStat, TmuxSessionOptions } from './connection.js';
export { ConnectionError, type ConnectionFailure, NotFoundError, PermissionError } from './errors.js';
export { LocalConnection } from './local.js';
export { parseSshHost, SshConnection, type SshConnectionOptions } from './ssh.js';
