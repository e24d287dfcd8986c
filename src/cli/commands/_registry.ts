/**
 * The registry a machine command works on: the file the registry argument names, or, for
 * `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]`, the registry `machines` under PREFIX on that etcd cluster
 * (the library's `(await Etcd.connect({ endpoints, prefix })).registry('machines')`).
 */
import type { Etcd } from '../../etcd/etcd.js';
import type { RegistryBase } from '../../registry/registry.js';
import { MachineRegistry } from '../../registry/registry.js';
import { UsageError } from '../errors.js';
import type { CommandInput } from '../spec.js';
import { connectEtcd, ETCD_REGISTRY_NAME, parseEtcdTarget } from './_etcd.js';

/** An open registry and what to call when the command is done with it. */
export interface OpenRegistry {
  registry: RegistryBase;
  /** The file, or the etcd location (`etcd://ENDPOINTS/PREFIXregistry/machines/`), for messages. */
  where: string;
  /** Closes the etcd connection (nothing to do for a file). */
  close(): Promise<void>;
}

/** Whether a registry argument names the registry on etcd. */
export const isEtcdRegistry = (registry: string) => /^etcd:\/\//i.test(registry);

/**
 * Refuses a registry argument that looks like a URL of another kind (`http://...`, `etcd:/x`), which would
 * otherwise be taken for a relative file path (and created by the first write).
 */
function checkRegistryArgument(registry: string, what: string): void {
  if (/^[a-z][a-z0-9+.-]*:\//i.test(registry))
    throw new UsageError(
      `${what}: ${JSON.stringify(registry)} is neither a file path nor an etcd://HOST:PORT[/PREFIX] URL`,
      "for etcd write 'etcd://10.0.0.1:2379/town'; for a file whose name looks like this, write './' before it",
    );
}

/** Opens the registry `input` names (connecting to etcd for an etcd:// one). */
export async function openRegistry(
  input: Pick<CommandInput, 'registry' | 'registryFrom'>,
): Promise<OpenRegistry> {
  const { registry } = input;
  const what = input.registryFrom === 'default' ? '--registry' : input.registryFrom;
  if (!isEtcdRegistry(registry)) {
    checkRegistryArgument(registry, what);
    const file = await MachineRegistry.open(registry);
    return { registry: file, where: file.path, close: async () => {} };
  }
  const etcd: Etcd = await connectEtcd(parseEtcdTarget(`etcd://${registry.slice('etcd://'.length)}`, what));
  try {
    const opened = await etcd.registry(ETCD_REGISTRY_NAME);
    return { registry: opened, where: opened.location, close: () => etcd.close() };
  } catch (err) {
    await etcd.close().catch(() => {});
    throw err;
  }
}

/** Runs `fn` on the registry `input` names and closes it afterwards, whatever happens. */
export async function withRegistry<T>(
  input: Pick<CommandInput, 'registry' | 'registryFrom'>,
  fn: (opened: OpenRegistry) => Promise<T>,
): Promise<T> {
  const opened = await openRegistry(input);
  try {
    return await fn(opened);
  } finally {
    await opened.close();
  }
}
