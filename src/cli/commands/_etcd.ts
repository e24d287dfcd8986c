/**
 * The etcd arguments of the CLI: `--etcd ENDPOINTS[/PREFIX]` (or $TOWNLOCK_ETCD) for `lock run`, and
 * `--registry etcd://ENDPOINTS[/PREFIX]` for the machine commands, parsed the same way. The etcd client
 * (etcd3, grpc-js) loads only when a command connects.
 */
import type { Etcd } from '../../etcd/etcd.js';
import { UsageError } from '../errors.js';

/** Where a command's etcd is: the endpoints and the key prefix townlock writes under. */
export interface EtcdTarget {
  endpoints: string[];
  /** The library's `prefix` option: PREFIX with a `/` added at the end, `townlock/` when none is given. */
  prefix: string;
}

/** `HOST:PORT`: a name, an IPv4 address or a bracketed IPv6 address, and a port. */
const ENDPOINT = /^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;

/** The registry the CLI uses under PREFIX (the library's `etcd.registry('machines')`). */
export const ETCD_REGISTRY_NAME = 'machines';

/**
 * Parses `HOST:PORT[,HOST:PORT...][/PREFIX]`, with or without `etcd://` in front (and `http://` before
 * any endpoint). `what` names the
 * argument in errors (`--etcd`, `--registry`, `TOWNLOCK_ETCD`).
 */
export function parseEtcdTarget(text: string, what: string): EtcdTarget {
  const body = text.startsWith('etcd://') ? text.slice('etcd://'.length) : text;
  // The endpoints end at the first '/' that is not part of a scheme (`http://`) leading an endpoint.
  const match = /^((?:[a-z]+:\/\/)?[^,/]*(?:,(?:[a-z]+:\/\/)?[^,/]*)*)(?:\/(.*))?$/s.exec(body)!;
  const hosts = match[1]!;
  let prefix = match[2] ?? '';
  // `http://` may lead each endpoint, as etcd's own --endpoints take it (TLS is not supported yet).
  const endpoints = hosts.split(',').map((e) => e.replace(/^http:\/\//, ''));
  const example = `${what} ${what === '--registry' ? 'etcd://' : ''}10.0.0.1:2379,10.0.0.2:2379/town`;
  for (const e of endpoints) {
    const port = ENDPOINT.exec(e)?.[1];
    if (e.startsWith('https://'))
      throw new UsageError(
        `${what}: ${JSON.stringify(e)}: TLS (https) is not supported yet`,
        'use http:// endpoints',
      );
    if (port === undefined || Number(port) < 1 || Number(port) > 65535)
      throw new UsageError(
        `${what}: ${JSON.stringify(e)} in ${JSON.stringify(text)} is not an etcd endpoint HOST:PORT`,
        `write e.g. '${example}'`,
      );
  }
  if (prefix === '') prefix = 'townlock/';
  else if (!prefix.endsWith('/')) prefix += '/';
  return { endpoints, prefix };
}

/** Connects to the target's cluster (loading the etcd client now). */
export async function connectEtcd(target: EtcdTarget): Promise<Etcd> {
  const { Etcd } = await import('../../etcd/etcd.js');
  return Etcd.connect({ endpoints: target.endpoints, prefix: target.prefix });
}
