/** Help and options of the `townlock lock ...` commands (their code loads only when they run). */
import type { OptionSpec } from '../args.js';
import type { CommandSpec } from '../spec.js';

/** The options that say what FILE is, shared by lock run, status and clean (see _lock-target.ts). */
const FILE_OPTIONS: OptionSpec[] = [
  {
    long: 'lock-file',
    short: 'L',
    help: "FILE is the lock file itself, as flock(1)'s FILE (the two exclude each other)",
  },
  {
    long: 'protect',
    help: 'FILE is the file to protect even if its name ends in .lock (lock: .gastown/locks/FILE.lock)',
  },
];

/** What FILE means, for every lock command's help. */
const FILE_HELP = `FILE is the file the lock protects: its lock file is .gastown/locks/<name>.lock beside it (the lock
of the library's withWriteLock(FILE), of the Go tool, and of 'flock .gastown/locks/<name>.lock').
With -L, FILE is the lock file itself, exactly flock(1)'s FILE. A FILE inside a .gastown/locks directory
is that lock file; a FILE named *.lock elsewhere is ambiguous: say -L or --protect.`;

export const LOCK_COMMANDS: CommandSpec[] = [
  {
    path: ['lock', 'run'],
    summary: 'Run a command while holding the lock on FILE (flock(1) flags and exit codes)',
    usage: [
      'townlock lock run [options] FILE COMMAND [ARG...]',
      "townlock lock run [options] FILE -c 'SHELL COMMAND'",
      'townlock lock run [options] -L LOCKFILE COMMAND [ARG...]',
      'townlock lock run [options] --etcd ENDPOINTS[/PREFIX] NAME COMMAND [ARG...]',
    ],
    details: `${FILE_HELP} A directory is refused.

Options go before FILE: everything after FILE is the command and its own arguments
('lock run f sort -n nums' runs 'sort -n nums'). A '--' before or after FILE is accepted.

Exit status: the command's own; 128+N if it died of signal N; the conflict code (1, or -E) when the
lock is busy (-n) or the wait timed out (-w); 64 usage error; 66 the lock file or its directory cannot be
opened or created; 69 the command is not found or cannot be run; 71 other OS errors.
Signals: TERM, USR1, USR2, ALRM, XCPU and the like sent to townlock are forwarded to the command; INT,
QUIT and HUP too, unless townlock is the terminal's foreground job (a Ctrl-C, Ctrl-\\ or hangup there
already reached the command, which runs in townlock's process group as under flock(1)). The lock is held until the command
exits. A signal while waiting for the lock ends the wait with 128+N.

With --etcd (or $TOWNLOCK_ETCD), the lock is NAME on the etcd cluster at ENDPOINTS
(HOST:PORT[,HOST:PORT...]), under the key prefix PREFIX (default townlock/): it excludes every process
on every host that locks NAME there, with the same flags and exit codes. If the lock is lost while the
command runs (this host cannot keep its etcd lease alive), the command and the processes it started get
SIGTERM, then SIGKILL after --kill-after SECONDS, and townlock exits 75 whatever the command's status.
75 also when etcd cannot be reached. TOWNLOCK_ETCD= (empty) turns an exported TOWNLOCK_ETCD off.`,
    options: [
      { long: 'exclusive', short: 'x', help: 'exclusive (write) lock; the default' },
      { long: 'shared', short: 's', help: 'shared (read) lock: other -s holders may hold it too' },
      {
        long: 'nonblock',
        short: 'n',
        aliases: ['nonblocking', 'nb'],
        help: 'fail at once if the lock is busy (same as -w 0)',
      },
      {
        long: 'wait',
        short: 'w',
        aliases: ['timeout'],
        value: 'SECONDS',
        help: 'give up if the lock is not acquired within SECONDS (fractions allowed); default: wait forever',
      },
      {
        long: 'conflict-exit-code',
        short: 'E',
        value: 'CODE',
        help: 'exit with CODE (0-255) when the lock is busy or the wait timed out; default 1',
      },
      {
        long: 'command',
        short: 'c',
        value: 'COMMAND',
        help: 'run COMMAND with /bin/sh -c (may also follow FILE, as in flock(1))',
      },
      ...FILE_OPTIONS,
      {
        long: 'etcd',
        value: 'ENDPOINTS[/PREFIX]',
        help: 'lock NAME on this etcd cluster instead of a file (default: $TOWNLOCK_ETCD if set)',
      },
      {
        long: 'kill-after',
        value: 'SECONDS',
        help: 'with --etcd: if the lock is lost, SIGKILL the command this long after SIGTERM (default 10)',
      },
    ],
    stopAtPositional: true,
    example: 'townlock lock run -w 10 state.json ./update-state.sh --verbose',
    load: async () => (await import('./lock-run.js')).run,
  },
  {
    path: ['lock', 'status'],
    summary: 'Show who holds which locks (like lslocks)',
    usage: ['townlock lock status [-L|--protect] [--json] [FILE|DIR]'],
    details: `${FILE_HELP}
DIR (default: the current directory): every lock file in DIR/.gastown/locks, or in DIR itself if it is a
.gastown/locks directory. A FILE or DIR that does not exist is an error (66). The table lists held
locks only (one row per holder); --json lists every lock file with its holders.`,
    options: [
      { long: 'json', help: 'print one JSON document: {"locks": [{"lockPath", "holders": [...]}]}' },
      ...FILE_OPTIONS,
    ],
    example: 'townlock lock status state.json',
    load: async () => (await import('./lock-status.js')).run,
  },
  {
    path: ['lock', 'clean'],
    summary: 'Delete lock files that nobody holds or has open',
    usage: ['townlock lock clean [-L|--protect] [FILE|DIR]'],
    details: `${FILE_HELP}
Deletes that one lock file if no process holds or has it open. DIR (default: the current directory):
cleans DIR/.gastown/locks, or DIR itself if it is a .gastown/locks directory. Only *.lock files in a
.gastown/locks directory are ever deleted (-L elsewhere is refused); a FILE or DIR that does not exist
is an error (66).`,
    options: FILE_OPTIONS,
    example: 'townlock lock clean ~/town',
    load: async () => (await import('./lock-clean.js')).run,
  },
];
