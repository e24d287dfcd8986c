/**
 * Whether townlock is in the foreground process group of its controlling terminal. When it is, a
 * Ctrl-C or Ctrl-\ typed there went from the terminal to every process of the group, the command that
 * `lock run` started included: forwarding it again would deliver it twice (many programs take a second
 * Ctrl-C as "force quit"). Node offers neither tcgetpgrp(3) nor getpgrp(2), so they are called through
 * koffi, loaded on the first question only (never on the fast path of a command).
 * Warning: a SIGINT sent with kill(1) while townlock is the foreground job looks the same as a typed
 * Ctrl-C; it is not forwarded either (the terminal's job then gets it the way flock(1)'s would).
 */
import fs from 'node:fs';

/** The two libc calls, once loaded. */
let libc: { tcgetpgrp(fd: number): number; getpgrp(): number } | undefined;

/** True when this process's group is the foreground group of its controlling terminal. */
export async function inForegroundProcessGroup(): Promise<boolean> {
  if (process.platform === 'win32') return false;
  let fd: number;
  try {
    // The controlling terminal itself, whatever stdin and stdout are; none (ENXIO): nobody typed it.
    fd = fs.openSync('/dev/tty', fs.constants.O_RDONLY | fs.constants.O_NOCTTY | fs.constants.O_NONBLOCK);
  } catch {
    return false;
  }
  try {
    libc ??= await loadLibc();
    const foreground = libc.tcgetpgrp(fd);
    return foreground > 0 && foreground === libc.getpgrp();
  } catch {
    return false;
  } finally {
    fs.closeSync(fd);
  }
}

/** Loads tcgetpgrp and getpgrp from the C library (through the lock backend's koffi). */
async function loadLibc(): Promise<NonNullable<typeof libc>> {
  const lib = (await import('../filelock/backend-flock.js')).loadLibc();
  return {
    tcgetpgrp: lib.func('int tcgetpgrp(int fd)') as (fd: number) => number,
    getpgrp: lib.func('int getpgrp(void)') as () => number,
  };
}
