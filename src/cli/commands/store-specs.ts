/** Help and options of `townlock json ...` and `townlock log ...` (their code loads only when they run). */
import type { CommandSpec } from '../spec.js';

/** How PATH addresses a value in a JSON document. */
const PATH_HELP = `PATH addresses a value: dot-separated keys and array indexes (runs, jobs.0.name), or a JSON
Pointer (/jobs/0/name, with ~1 for / and ~0 for ~). An empty PATH or '.' is the whole document.`;

export const STORE_COMMANDS: CommandSpec[] = [
  {
    path: ['json', 'get'],
    summary: 'Print a JSON state file, or the value at PATH in it',
    usage: ['townlock json get [--raw] FILE [PATH]'],
    details: `${PATH_HELP}
Reads the last committed version: never a file half written (writers replace it atomically). Exit 1
when nothing is at PATH, 66 when FILE does not exist, 65 when it is not valid JSON.`,
    options: [{ long: 'raw', short: 'r', help: 'print a string value without quotes (as jq -r)' }],
    example: 'townlock json get state.json jobs.0.name',
    load: async () => (await import('./json.js')).get,
  },
  {
    path: ['json', 'set'],
    summary: 'Set the value at PATH in a JSON state file (locked read-modify-write)',
    usage: ['townlock json set [--string] FILE PATH VALUE'],
    details: `${PATH_HELP}
VALUE is JSON (42, true, "text", {"a": 1}); with --string it is taken as a string as written. Missing
objects along PATH are created; a missing FILE is created. The change is made under the file's
exclusive lock on its latest version and is on disk (fsynced) when townlock exits 0, so any number of
shells, Node processes (JsonFile) and the Go tool can update the file at once without losing a change.
A file that is not valid JSON is never overwritten (exit 65).`,
    options: [{ long: 'string', short: 's', help: 'VALUE is a string, not JSON' }],
    example: 'townlock json set state.json jobs.0.status \'"done"\'',
    load: async () => (await import('./json.js')).set,
  },
  {
    path: ['log', 'append'],
    summary: 'Append JSON entries to a JSONL log, one line each (locked, fsynced)',
    usage: ['townlock log append [--string] FILE JSON [JSON...]'],
    details: `Each JSON argument is one entry (with --string, each is taken as a string as written). They are
written as one O_APPEND write under the log's exclusive lock and fsynced before townlock exits 0. A
torn last line left by a crash is kept, on a line of its own, for 'townlock log tail' to report.`,
    options: [{ long: 'string', short: 's', help: 'each entry is a string, not JSON' }],
    example: 'townlock log append events.jsonl \'{"type": "deploy", "host": "build-01"}\'',
    load: async () => (await import('./log.js')).append,
  },
  {
    path: ['log', 'tail'],
    summary: 'Print the last entries of a JSONL log, and follow it with -f',
    usage: ['townlock log tail [-f] [-n COUNT|+N] FILE'],
    details: `Prints the last COUNT entries (default 10), one JSON per line; with -f, then every entry appended
after them, as it arrives, until interrupted. A torn line (a crash mid-append, or a line that is not
JSON) is never printed as an entry: it is reported on stderr with its byte offset, and tail goes on.`,
    options: [
      { long: 'follow', short: 'f', help: 'keep printing entries as they are appended (Ctrl-C ends it)' },
      {
        long: 'lines',
        short: 'n',
        value: 'COUNT',
        help: 'how many of the last entries to print first (default 10); +N: from the Nth entry on',
      },
    ],
    example: 'townlock log tail -f events.jsonl',
    load: async () => (await import('./log.js')).tail,
  },
];
