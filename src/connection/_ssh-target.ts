/**
 * Where an SshConnection connects, and as whom. Each value comes from the first of: the machine's host
 * spec (`user@`, `:port`) and its `keyPath`; the ssh config file's settings for that host (an alias's
 * HostName, User, Port, IdentityFile); the defaults (the host as given, the local user name, port 22,
 * the agent or the usual key files). known_hosts is then checked for the real host name and port.
 */
import { homedir, userInfo } from 'node:os';
import { expandIdentityFile, readSshConfig } from './_ssh-config.js';
import { expandHome, parseSshSpec } from './_ssh-options.js';

/** The connection target. */
export interface SshTarget {
  /** The real host name (HostName from the config, else the host as given). */
  host: string;
  port: number;
  user: string;
  /** The key file the options name explicitly (it wins over the config's IdentityFiles). */
  keyPath: string | undefined;
  /** The config's IdentityFiles, expanded, in order. */
  identityFiles: string[];
}

/** The ssh config file to read: the option, else $TOWNLOCK_SSH_CONFIG, else ~/.ssh/config; none if '' or false. */
export function sshConfigFile(option: string | false | undefined): string | undefined {
  const path = option ?? process.env.TOWNLOCK_SSH_CONFIG ?? '~/.ssh/config';
  return path === false || path === '' ? undefined : expandHome(path);
}

/** Resolves the options' host spec against the ssh config (may throw SshConfigError). */
export function sshTarget(options: {
  host: string;
  keyPath?: string;
  sshConfigPath?: string | false;
}): SshTarget {
  const spec = parseSshSpec(options.host);
  const file = sshConfigFile(options.sshConfigPath);
  const config = file ? readSshConfig(file, spec.host) : { identityFiles: [] };
  const localUser = userInfo().username;
  const target = {
    host: config.hostName ?? spec.host,
    port: spec.port ?? config.port ?? 22,
    user: spec.user ?? config.user ?? localUser,
  };
  const values = {
    home: homedir(),
    host: target.host,
    port: target.port,
    remoteUser: target.user,
    localUser,
  };
  return {
    ...target,
    keyPath: options.keyPath,
    identityFiles: config.identityFiles.map((f) => expandIdentityFile(f, values)),
  };
}
