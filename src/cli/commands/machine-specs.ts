/** Help and options of the `townlock machine ...` commands (their code loads only when they run). */
import type { OptionSpec } from '../args.js';
import type { CommandSpec } from '../spec.js';

/** Options of the commands that connect to a machine. */
const CONNECTION_OPTIONS: OptionSpec[] = [
  {
    long: 'known-hosts',
    value: 'PATH',
    help: 'known_hosts file to check host keys against (default: $TOWNLOCK_KNOWN_HOSTS, else ~/.ssh/known_hosts)',
  },
  {
    long: 'accept-new-host-key',
    help: 'trust and record the key of a host that has none in known_hosts yet (never a changed key)',
  },
  { long: 'timeout', value: 'SECONDS', help: 'give up (and kill the command) after SECONDS' },
];

const CONNECTION_DETAILS = `SSH: the key passphrase, if any, comes from $TOWNLOCK_SSH_PASSPHRASE. The machine's host may be a
Host alias of ~/.ssh/config (or of $TOWNLOCK_SSH_CONFIG; empty: none), which supplies HostName, User,
Port and IdentityFile. The key is the machine's key, else the config's IdentityFile, else the SSH agent,
else ~/.ssh/id_ed25519, id_ecdsa, id_rsa.`;

export const MACHINE_COMMANDS: CommandSpec[] = [
  {
    path: ['machine', 'list'],
    aliases: ['ls'],
    summary: 'List the machines in the registry',
    usage: ['townlock machine list [--registry PATH] [--json]'],
    details: `Columns NAME TYPE HOST KEY TOWN, sorted by name. Entries of the registry file that are not valid
machines are skipped, with one warning line each on stderr.`,
    options: [{ long: 'json', help: 'print a JSON array of {name, type, host?, keyPath?, townPath?}' }],
    registry: true,
    example: 'townlock machine list --json',
    load: async () => (await import('./machine.js')).list,
  },
  {
    path: ['machine', 'show'],
    summary: 'Show one machine',
    usage: ['townlock machine show [--registry PATH] [--json] NAME'],
    options: [{ long: 'json', help: 'print the machine as a JSON object' }],
    registry: true,
    example: 'townlock machine show build-01',
    load: async () => (await import('./machine.js')).show,
  },
  {
    path: ['machine', 'add'],
    summary: 'Add a machine, or replace the one with that name',
    usage: [
      'townlock machine add [--registry PATH] NAME --type ssh --host [USER@]HOST[:PORT] [--key PATH] [--town PATH]',
      'townlock machine add [--registry PATH] NAME --type local [--town PATH]',
    ],
    details: `NAME: 1-63 characters of A-Z a-z 0-9 . _ -, not starting with . or -. Fields other tools stored
with an existing machine of that name are kept. Safe to run from many shells at once.`,
    options: [
      {
        long: 'type',
        short: 't',
        value: 'TYPE',
        help: 'local (this machine; takes no --host or --key) or ssh (reached over SSH); default: ssh when --host is given',
      },
      {
        long: 'host',
        short: 'H',
        value: '[USER@]HOST[:PORT]',
        help: 'for ssh: where to connect; HOST may be a Host alias of ~/.ssh/config (HostName, User, Port, IdentityFile are read from it); never starts with -',
      },
      {
        long: 'key',
        short: 'k',
        value: 'PATH',
        help: "for ssh: private key file; it must exist (a relative path is made absolute; ~/... is stored as written and expanded when connecting); default: the ssh config's IdentityFile, the SSH agent, ~/.ssh/id_*",
      },
      { long: 'town', value: 'PATH', help: "where the town (the Go tool's workspace) lives on that machine" },
    ],
    registry: true,
    example:
      'townlock machine add build-01 --type ssh --host deploy@build-01.example.com:2222 --key ~/.ssh/id_ed25519',
    load: async () => (await import('./machine.js')).add,
  },
  {
    path: ['machine', 'remove'],
    aliases: ['rm'],
    summary: 'Remove a machine (not "local")',
    usage: ['townlock machine remove [--registry PATH] NAME'],
    options: [],
    registry: true,
    example: 'townlock machine remove build-01',
    load: async () => (await import('./machine.js')).remove,
  },
  {
    path: ['machine', 'exec'],
    summary: "Run a command on a machine; exits with the command's exit code",
    usage: [
      'townlock machine exec [--known-hosts PATH] [--accept-new-host-key] [--timeout SECONDS] [--registry PATH] NAME COMMAND [ARG...]',
    ],
    details: `Options go before NAME: everything after NAME is the command and its own arguments, each of
which reaches the command literally (quoted for the remote shell). townlock's stdin goes to the command
(none when it is a terminal); the command's stdout and stderr come out unchanged as they are written,
and townlock exits with its status (128+N if signal N killed it). On --timeout, Ctrl-C, SIGTERM or
SIGHUP the command and every process it started are killed; also when the reader of townlock's output
went away (exit 141, as for SIGPIPE). Connection refused by host-key or authentication policy: exit 1;
machine unreachable, connection lost or timed out: 75.

${CONNECTION_DETAILS}`,
    options: CONNECTION_OPTIONS,
    stopAtPositional: true,
    registry: true,
    example: "townlock machine exec build-01 ls -la '/srv/my town'",
    load: async () => (await import('./machine-remote.js')).exec,
  },
  {
    path: ['machine', 'test'],
    summary: 'Connect to a machine and report the round-trip time and `uname -a`',
    usage: [
      'townlock machine test [--known-hosts PATH] [--accept-new-host-key] [--timeout SECONDS] [--registry PATH] [--json] NAME',
    ],
    details: `Runs \`true\` and \`uname -a\` (each within --timeout, default 30 s). Exit 0 when it worked, 1 when
uname failed, otherwise as machine exec.

${CONNECTION_DETAILS}`,
    options: [...CONNECTION_OPTIONS, { long: 'json', help: 'print {name, ok, connectMs, rttMs, uname}' }],
    registry: true,
    example: 'townlock machine test build-01',
    load: async () => (await import('./machine-remote.js')).test,
  },
  {
    path: ['machine', 'import'],
    summary: "Copy the machines of a registry file (the Go tool's format) into the registry",
    usage: ['townlock machine import [--registry PATH] FILE'],
    details: `Adds every machine of FILE to the registry (--registry: a file, or etcd://... to migrate to etcd),
replacing machines of the same name; machines FILE does not have are kept. Entries are copied whole:
fields this version does not know are kept, and entries that are not valid machines are copied as
written (kept, not served, one warning each). "local" is imported only if FILE gives it fields of its
own. One atomic write: other processes see all of it or none. Prints how many were added, replaced and
already there. FILE missing: 66; not a registry file: 65 (nothing is written).`,
    options: [],
    registry: true,
    example: 'townlock machine import --registry etcd://10.0.0.1:2379/town ~/.config/townlock/machines.json',
    load: async () => (await import('./machine-transfer.js')).importFile,
  },
  {
    path: ['machine', 'export'],
    summary: "Write the registry as a registry file in the Go tool's format (stdout without FILE)",
    usage: ['townlock machine export [--registry PATH] [FILE]'],
    details: `Without FILE (or with -), prints the registry (--registry: a file, or etcd://...) in the Go tool's
file format on stdout. With FILE, makes FILE hold exactly the registry's machines, entries copied whole
(unknown fields and invalid entries included), in one locked atomic write: FILE is the registry file
other processes and the Go tool may be using at the same time. A FILE that exists but is not a registry
file is never overwritten (65).`,
    options: [],
    registry: true,
    example: 'townlock machine export --registry etcd://10.0.0.1:2379/town backup.json',
    load: async () => (await import('./machine-transfer.js')).exportFile,
  },
];
