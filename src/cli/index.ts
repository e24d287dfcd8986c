/** The CLI as a library: run townlock commands in-process with your own context. */
export { COMMANDS, runCli } from './cli.js';
export { type CliContext, EXIT, type Output, UsageError } from './context.js';
