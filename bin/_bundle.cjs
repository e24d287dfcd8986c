// Loads dist/cli.cjs, the CLI bundled into one CommonJS file, compiled with the V8 code cache the build
// wrote beside it (dist/cli.cjs.cache): that saves most of the ~10 ms V8 spends compiling the bundle on
// every run. V8 itself checks only the Node version, its flags and the source's length, and trusts the
// rest, so the cache file also carries the bundle's path and a copy of its bytes: it is used only for
// that very file, byte for byte, built at that path (stack traces name the path the cache was made at).
// Anything else (no cache, another build, a patched bundle, a moved package, other Node flags) compiles
// the bundle as usual. The cache is not published (package.json "files"): a registry install compiles.
// V8 does not checksum the cached code itself: a cache damaged on disk can crash Node. The build writes
// it atomically; delete dist/cli.cjs.cache (or rebuild) if that ever happens.
'use strict';
const fs = require('node:fs');
const { createRequire } = require('node:module');
const { dirname, join } = require('node:path');
const { Script } = require('node:vm');

const BUNDLE = join(__dirname, '..', 'dist', 'cli.cjs');
const CACHE = `${BUNDLE}.cache`;
const MAGIC = 'townlock-v8-cache 1\n';

/** Node's module wrapper, so that line numbers in stack traces are the bundle's. */
const wrap = (source) => `(function (exports, require, module, __filename, __dirname) { ${source}\n});`;

/** The V8 data in the cache file, if it was made for exactly `bundle` at BUNDLE; else undefined. */
function cachedDataFor(bundle) {
  let fd;
  try {
    // O_NONBLOCK: a FIFO in its place must not hang the command; only a regular file is read.
    fd = fs.openSync(CACHE, fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0));
    const stat = fs.fstatSync(fd);
    // A cache is the bundle plus V8's data (a fraction of it): anything far larger is not one.
    if (!stat.isFile() || stat.size > 4 * bundle.length + 65536) return undefined;
    const file = fs.readFileSync(fd);
    const end = file.indexOf(10, MAGIC.length);
    if (end < 0 || file.toString('latin1', 0, MAGIC.length) !== MAGIC) return undefined;
    const header = JSON.parse(file.toString('utf8', MAGIC.length, end));
    if (header.bundle !== BUNDLE || header.sourceLength !== bundle.length) return undefined;
    const start = end + 1;
    if (!file.subarray(start, start + bundle.length).equals(bundle)) return undefined;
    const data = file.subarray(start + bundle.length);
    return data.length > 0 ? data : undefined;
  } catch {
    return undefined;
  } finally {
    try {
      if (fd !== undefined) fs.closeSync(fd);
    } catch {
      // a failed close of the cache must not stop the command
    }
  }
}

/**
 * The bundle (`bundle`: its bytes, read now when not given) compiled as a CommonJS module function, with
 * the cache when `useCache`.
 */
function compile(useCache = true, bundle = fs.readFileSync(BUNDLE)) {
  const cachedData = useCache ? cachedDataFor(bundle) : undefined;
  return new Script(wrap(bundle.toString('utf8')), { filename: BUNDLE, cachedData });
}

/** Runs the bundle's top level and returns its exports. */
function load(script) {
  const module = { exports: {}, filename: BUNDLE };
  script.runInThisContext()(module.exports, createRequire(BUNDLE), module, BUNDLE, dirname(BUNDLE));
  return module.exports;
}

/** Writes the cache for the current bundle (the build calls this), atomically. */
function writeCache() {
  fs.rmSync(CACHE, { force: true });
  const bundle = fs.readFileSync(BUNDLE);
  const script = compile(false, bundle); // the very bytes the cache carries, even if the file changes now
  load(script); // taken after the top level ran: the functions that ran are in the cache too
  const header = `${MAGIC}${JSON.stringify({ bundle: BUNDLE, sourceLength: bundle.length })}\n`;
  const temp = `${CACHE}.${process.pid}.tmp`;
  fs.writeFileSync(temp, Buffer.concat([Buffer.from(header), bundle, script.createCachedData()]));
  fs.renameSync(temp, CACHE);
}

module.exports = { BUNDLE, CACHE, cachedDataFor, compile, load, writeCache };
