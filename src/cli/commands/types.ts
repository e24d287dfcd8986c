/** The shape every CLI command has. */
import type { CliContext } from '../context.js';
import type { ExitCode } from '../errors.js';

/** Options every command receives, parsed before dispatch. */
export interface GlobalOptions {
  /** The registry file (from --registry, $TOWNLOCK_REGISTRY or the default). */
  registry: string;
}

/** A command: where it sits in the tree, its help, and `run`, which only talks to the world through ctx. */
export interface Command {
  path: string[];
  summary: string;
  usage: string;
  example: string;
  /** Extra help text: flags and exit codes. */
  details?: string;
  run(args: string[], ctx: CliContext, globals: GlobalOptions): Promise<ExitCode>;
}
