/**
 * `townlock machine import FILE` and `townlock machine export [FILE]`: copy machines between a registry
 * file in the Go tool's format and any registry (a file or etcd), the way to migrate. Entries are copied
 * whole: fields this version does not know, and entries that are not valid machines, arrive as they were.
 */
import { existsSync } from 'node:fs';
import { EtcdTxnTooLargeError } from '../../etcd/errors.js';
import {
  type Entry,
  entryText,
  LOCAL_ENTRY,
  type RegistryState,
  serializeRegistry,
} from '../../registry/_format.js';
import { MachineRegistry, transferOf } from '../../registry/registry.js';
import { absolutePath, expectPositionals } from '../args.js';
import type { CliContext } from '../context.js';
import { EXIT } from '../errors.js';
import { printDocument, printLines, printWarning } from '../output.js';
import type { CommandRun } from '../spec.js';
import { requireInput } from './_input.js';
import { withRegistry } from './_registry.js';

/** What an import or export changed in its target. */
interface Copied {
  added: number;
  replaced: number;
  unchanged: number;
  removed: number;
}

export const importFile: CommandRun = async (args, ctx, input) => {
  const [file] = expectPositionals(args, ['FILE'], input.usage) as [string];
  const source = await readRegistryFile(absolutePath(ctx, file));
  const entries = copiedEntries(source, ctx, file);
  const { copied, where, parts } = await withRegistry(input, async ({ registry, where }) => {
    const transfer = transferOf(registry);
    try {
      return {
        copied: await transfer.change((target, put) => copy(entries, target, put, false)),
        where,
        parts: 1,
      };
    } catch (err) {
      if (!(err instanceof EtcdTxnTooLargeError)) throw err;
      // More machines than one etcd transaction holds: one transaction per part, each atomic, in name
      // order (running the import again after a failure finishes it). A part the cluster still refuses
      // (its --max-txn-ops is below the client's limit) is halved until it fits.
      let size = Math.max(1, err.limit - 2); // room for the compares on the meta and epoch keys
      const names = [...entries.keys()].sort();
      const total: Copied = { added: 0, replaced: 0, unchanged: 0, removed: 0 };
      let parts = 0;
      for (let i = 0; i < names.length; ) {
        const part = new Map(names.slice(i, i + size).map((n) => [n, entries.get(n)!]));
        let done: Copied;
        try {
          done = await transfer.change((target, put) => copy(part, target, put, false));
        } catch (partErr) {
          if (!(partErr instanceof EtcdTxnTooLargeError) || size === 1) throw partErr;
          size = Math.ceil(size / 2);
          continue;
        }
        for (const k of Object.keys(total) as (keyof Copied)[]) total[k] += done[k];
        parts++;
        i += part.size;
      }
      return { copied: total, where, parts };
    }
  });
  const split = parts > 1 ? ` (in ${parts} transactions: more than one etcd transaction holds)` : '';
  printLines(
    ctx.stdout,
    `imported ${count(entries.size)} from ${file} into ${where}: ${summary(copied)}${split}`,
  );
  return EXIT.ok;
};

export const exportFile: CommandRun = async (args, ctx, input) => {
  const [file] = args.positionals.length === 0 ? [] : expectPositionals(args, ['FILE'], input.usage);
  // The registry as it is now (an etcd registry: after a linearizable re-read).
  const state = await withRegistry(input, async ({ registry }) => {
    await registry.reload();
    return transferOf(registry).state();
  });
  if (file === undefined || file === '-') {
    printDocument(ctx.stdout, serializeRegistry(state).toString('utf8'));
    return EXIT.ok;
  }
  // Into a registry file: the same locked read-modify-write as any registry write, so the Go tool and
  // other townlock processes never see half of it, and a FILE that is not a registry is never overwritten.
  const path = absolutePath(ctx, file);
  const target = await MachineRegistry.open(path);
  const entries = new Map(state.entries);
  const copied = await transferOf(target).change((current, put) => {
    const done = copy(entries, current, put, true);
    // A FILE that does not exist (asked here, under the registry's lock) is made even when it should hold
    // only what a missing file reads as (the built-in `local`): the command says it exported.
    if (done.added + done.replaced + done.removed === 0 && !existsSync(path))
      put('local', current.get('local'));
    return done;
  });
  printLines(ctx.stdout, `exported ${count(entries.size)} to ${file}: ${summary(copied)}`);
  return EXIT.ok;
};

/** Reads a registry file as MachineRegistry does (66 when it does not exist, 65 when it is not a registry). */
async function readRegistryFile(path: string): Promise<RegistryState> {
  requireInput(path, 'registry file');
  return transferOf(await MachineRegistry.open(path)).state();
}

/**
 * The entries of `source` to import: every entry as it is, except `local` when it is the built-in one
 * (the target's own `local` is kept) or not valid (a registry's `local` is never replaced by a broken one).
 * Says on stderr what is imported without being served, and what is not imported.
 */
function copiedEntries(source: RegistryState, ctx: CliContext, file: string): Map<string, Entry> {
  const entries = new Map<string, Entry>();
  for (const [name, entry] of source.entries) {
    if (name === 'local' && (entry === LOCAL_ENTRY || !entry.valid)) {
      if (!entry.valid)
        printWarning(
          ctx,
          `not importing "local" from ${file}: ${entry.problem.field} ${entry.problem.detail}`,
        );
      continue;
    }
    if (!entry.valid)
      printWarning(
        ctx,
        `importing invalid machine "${name}" as written (kept, not served): ${entry.problem.field} ${entry.problem.detail}`,
      );
    entries.set(name, entry);
  }
  if (source.extra.length > 0)
    printWarning(
      ctx,
      `not importing the top-level fields ${source.extra.map(([k]) => JSON.stringify(k)).join(', ')} of ${file} (only machines are imported)`,
    );
  return entries;
}

/**
 * Puts `entries` into `target` (skipping those already there byte for byte); with `exact`, also removes
 * what `entries` lacks, so that the target ends with exactly these machines.
 */
function copy(
  entries: ReadonlyMap<string, Entry>,
  target: ReadonlyMap<string, Entry>,
  put: (name: string, entry: Entry | undefined) => void,
  exact: boolean,
): Copied {
  const copied: Copied = { added: 0, replaced: 0, unchanged: 0, removed: 0 };
  if (exact) {
    for (const name of [...target.keys()]) {
      if (!entries.has(name) && name !== 'local') {
        put(name, undefined);
        copied.removed++;
      }
    }
  }
  for (const [name, entry] of entries) {
    const current = target.get(name);
    if (current && entryText(current) === entryText(entry)) copied.unchanged++;
    else {
      put(name, entry);
      if (current) copied.replaced++;
      else copied.added++;
    }
  }
  return copied;
}

/** `1 machine`, `3 machines`. */
const count = (n: number) => `${n} machine${n === 1 ? '' : 's'}`;

/** `2 added, 1 replaced, 0 unchanged` (and `, 4 removed` when any were). */
function summary(c: Copied): string {
  const parts = [`${c.added} added`, `${c.replaced} replaced`, `${c.unchanged} unchanged`];
  if (c.removed > 0) parts.push(`${c.removed} removed`);
  return parts.join(', ');
}
