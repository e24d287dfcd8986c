/**
 * lock run and signals, with a real pseudo-terminal: a Ctrl-C typed at the terminal reaches the command
 * once (the terminal sends it to the whole foreground group, townlock's command included), and a SIGINT
 * sent to townlock with kill(1) still reaches it once.
 */
import assert from 'node:assert/strict';
import { join, resolve } from 'node:path';
import { after, afterEach, test } from 'node:test';
import { DIST, reapAll, requireTool, start, tempDir } from '../multiprocess/helpers.js';

const BIN = resolve(DIST, '..', 'bin', 'townlock.js');
const tmp = tempDir('townlock-signals-');
after(tmp.remove);
afterEach(reapAll);

/** The command under the lock: counts SIGINTs, prints the count on SIGTERM and exits 0. */
const COUNTER = `
import signal, sys
n = 0
def on_int(s, f):
    global n
    n += 1
    print('int', n, flush=True)
def on_term(s, f):
    print('count', n, flush=True)
    sys.exit(0)
signal.signal(signal.SIGINT, on_int)
signal.signal(signal.SIGTERM, on_term)
print('ready', flush=True)
while True:
    signal.pause()
`;

/**
 * Runs argv on a new pseudo-terminal (pty.fork: a new session whose controlling terminal is the pty,
 * the child its foreground group), relays its output, and on stdin lines "intr" types Ctrl-C, "term"
 * sends SIGTERM to the child; prints "exit N" at the end.
 */
const PTY_DRIVER = `
import os, pty, select, signal, sys
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
inputs = [fd, sys.stdin.fileno()]
while True:
    ready, _, _ = select.select(inputs, [], [])
    if fd in ready:
        try:
            data = os.read(fd, 4096)
        except OSError:
            data = b''
        if not data:
            break
        sys.stdout.buffer.write(data.replace(b'\\r', b''))
        sys.stdout.flush()
    if sys.stdin.fileno() in ready:
        line = sys.stdin.readline().strip()
        if line == 'intr':
            os.write(fd, b'\\x03')
        elif line == 'term':
            os.kill(pid, signal.SIGTERM)
        elif line == '':
            inputs.remove(sys.stdin.fileno())
_, status = os.waitpid(pid, 0)
print('exit', os.waitstatus_to_exitcode(status), flush=True)
`;

test('Ctrl-C typed at the terminal reaches the command once, not twice', async (t) => {
  if (!requireTool(t, 'python3')) return;
  const file = join(tmp.dir, 'tty.json');
  const run = start('python3', [
    '-c',
    PTY_DRIVER,
    process.execPath,
    BIN,
    'lock',
    'run',
    file,
    'python3',
    '-c',
    COUNTER,
  ]);
  await run.waitFor(/ready$/);
  run.send('intr');
  await run.waitFor(/int 1$/);
  // TERM is forwarded after any INT townlock received before it (it forwards in arrival order), so by
  // the time the command reports its count, a forwarded second INT would have been counted.
  run.send('term');
  const count = await run.waitFor(/^count \d+$/);
  assert.equal(count, 'count 1', run.lines.join('\n'));
  await run.waitFor('exit 0');
  assert.equal(await run.exited(), 0);
});

test('SIGINT sent to townlock with kill (no terminal) reaches the command once', async (t) => {
  if (!requireTool(t, 'python3')) return;
  const file = join(tmp.dir, 'kill.json');
  // detached: a session of its own, without the controlling terminal this test may have been run from.
  const run = start(process.execPath, [BIN, 'lock', 'run', file, 'python3', '-c', COUNTER], {}, true);
  await run.waitFor('ready');
  run.proc.kill('SIGINT');
  await run.waitFor('int 1');
  run.proc.kill('SIGTERM');
  assert.equal(await run.waitFor(/^count \d+$/), 'count 1');
  assert.equal(await run.exited(), 0);
});
