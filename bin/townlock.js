#!/usr/bin/env node
// The townlock command (CommonJS, see bin/package.json). The CLI lives in dist/ (built by `npm ci` through
// the prepare script), bundled into one CommonJS file, dist/cli.cjs, because that starts faster than
// dist/cli/ module by module. It is compiled here with the V8 code cache the build wrote beside it,
// dist/cli.cjs.cache: that saves most of the ~10 ms V8 spends compiling the bundle on every run. V8
// refuses a cache made by another Node version or with other flags (or for a bundle of another length);
// the bundle is then compiled as usual. Both files come from one build step: never edit dist/ by hand.
'use strict';
const { readFileSync } = require('node:fs');
const { createRequire } = require('node:module');
const { dirname, join } = require('node:path');
const { Script } = require('node:vm');

const BUNDLE = join(__dirname, '..', 'dist', 'cli.cjs');
const CACHE = `${BUNDLE}.cache`;

/** The bundle compiled (with the code cache when there is one) as a CommonJS module function. */
function compile(cachedData) {
  const source = readFileSync(BUNDLE, 'utf8');
  // The wrapper is Node's own (module.wrap), so line numbers in stack traces are the bundle's.
  const wrapped = `(function (exports, require, module, __filename, __dirname) { ${source}\n});`;
  return new Script(wrapped, { filename: BUNDLE, cachedData });
}

/** Runs the bundle's top level and returns its exports. */
function load(script) {
  const module = { exports: {}, filename: BUNDLE };
  script.runInThisContext()(module.exports, createRequire(BUNDLE), module, BUNDLE, dirname(BUNDLE));
  return module.exports;
}

/** The code cache, or undefined when there is none. */
function readCache() {
  try {
    return readFileSync(CACHE);
  } catch {
    return undefined;
  }
}

if (require.main === module) load(compile(readCache())).runMain();
else module.exports = { BUNDLE, CACHE, compile, load, readCache };
