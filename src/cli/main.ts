/** The process entry point: the only place that touches process.argv, stdio, signals and exit codes. */
import { spawn } from 'node:child_process';
import { runCli } from './cli.js';
import type { CliContext } from './context.js';

const FORWARDED: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2'];

/** Runs townlock with this process's arguments and sets the exit code. */
export async function runMain(argv: string[] = process.argv.slice(2)): Promise<void> {
  // A closed pipe (`townlock machine list | head -1`) is the reader's choice, not an error to report.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') throw err;
    });
  }
  const ctx: CliContext = {
    env: process.env,
    cwd: process.cwd(),
    stdout: process.stdout,
    stderr: process.stderr,
    spawn,
    onSignal(handler) {
      for (const s of FORWARDED) process.on(s, handler);
      return () => {
        for (const s of FORWARDED) process.off(s, handler);
      };
    },
  };
  process.exitCode = await runCli(argv, ctx);
}
