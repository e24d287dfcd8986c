/**
 * One glob algorithm for every connection: walks directories through a `list` callback, so local and
 * SFTP globbing behave identically. Supports `*`, `?`, `[...]` (`[!...]` negates) within a path segment
 * and `**` for any number of directories. Like shells, wildcards do not match names starting with `.`
 * unless the pattern segment does; symlinks are not descended into.
 */

/** A directory entry as the walker needs it. */
export interface DirEntry {
  name: string;
  isDir: boolean;
}

/** Lists a directory, or returns undefined if it does not exist or is not a directory. */
export type Lister = (dir: string) => Promise<DirEntry[] | undefined>;

/** Returns the sorted paths matching `pattern`, listing directories with `list`. */
export async function globWith(pattern: string, list: Lister): Promise<string[]> {
  const absolute = pattern.startsWith('/');
  const segments = pattern.split('/').filter((s) => s !== '' && s !== '.');
  const found = new Set<string>();
  const join = (dir: string, name: string) =>
    dir === '' ? name : dir === '/' ? `/${name}` : `${dir}/${name}`;
  const listDir = (dir: string) => list(dir === '' ? '.' : dir);

  const walk = async (dir: string, i: number): Promise<void> => {
    if (i === segments.length) {
      if (dir !== '' && dir !== '/') found.add(dir);
      return;
    }
    const segment = segments[i]!;
    if (segment === '**') {
      await walk(dir, i + 1);
      for (const e of (await listDir(dir)) ?? []) {
        if (e.isDir && !e.name.startsWith('.')) await walk(join(dir, e.name), i);
      }
      return;
    }
    const last = i === segments.length - 1;
    if (!/[*?[]/.test(segment)) {
      const entry = ((await listDir(dir)) ?? []).find((e) => e.name === segment);
      if (entry && (last || entry.isDir)) await walk(join(dir, segment), i + 1);
      return;
    }
    const re = segmentRegex(segment);
    for (const e of (await listDir(dir)) ?? []) {
      if (!re.test(e.name) || (e.name.startsWith('.') && !segment.startsWith('.'))) continue;
      if (last) found.add(join(dir, e.name));
      else if (e.isDir) await walk(join(dir, e.name), i + 1);
    }
  };
  await walk(absolute ? '/' : '', 0);
  return [...found].sort();
}

/** Translates one glob segment to an anchored regular expression. */
function segmentRegex(segment: string): RegExp {
  let re = '';
  for (let i = 0; i < segment.length; i++) {
    const ch = segment[i]!;
    if (ch === '*') re += '[^/]*';
    else if (ch === '?') re += '[^/]';
    else if (ch === '[') {
      const close = segment.indexOf(']', i + 2);
      if (close < 0) re += '\\[';
      else {
        let body = segment.slice(i + 1, close);
        const negate = body.startsWith('!') || body.startsWith('^');
        if (negate) body = body.slice(1);
        re += `[${negate ? '^' : ''}${body.replace(/[\\\]]/g, '\\$&')}]`;
        i = close;
      }
    } else re += ch.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}
