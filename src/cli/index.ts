/** The CLI as a library: run townlock commands in-process with your own context. */
export { runCli } from './cli.js';
export type { CliContext, Input, Output } from './context.js';
export { EXIT, type ExitCode, exitCodeFor, UsageError } from './errors.js';
export { COMMANDS, type CommandSpec } from './spec.js';
