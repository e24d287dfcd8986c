/**
 * The registry a machine command works on: the file the registry argument names, or, for
 * `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]`, the registry `machines` under PREFIX on that etcd cluster
 * (the library's `(await Etcd.connect({ endpoints, prefix })).registry('machines')`).
 */
import type { Etcd } from '../../etcd/etcd.js';
import type { RegistryBase } from '../../registry/registry.js';
import { MachineRegistry } from '../../registry/registry.js';
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
export const isEtcdRegistry = (registry: string) => registry.startsWith('etcd://');

/** Opens the registry `input` names (connecting to etcd for an etcd:// one). */
export async function openRegistry(
  input: Pick<CommandInput, 'registry' | 'registryFrom'>,
): Promise<OpenRegistry> {
  const { registry } = input;
  if (!isEtcdRegistry(registry)) {
    const file = await MachineRegistry.open(registry);
    return { registry: file, where: file.path, close: async () => {} };
  }
  const what = input.registryFrom === 'default' ? '--registry' : input.registryFrom;
  const etcd: Etcd = await connectEtcd(parseEtcdTarget(registry, what));
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
