#!/usr/bin/env node
// The townlock command (CommonJS, see bin/package.json). The CLI lives in dist/ (built by `npm ci` through
// the prepare script), bundled into one CommonJS file, dist/cli.cjs, because that starts faster than
// dist/cli/ module by module; _bundle.cjs loads it with V8's code cache.
'use strict';
const bundle = require('./_bundle.cjs');
bundle.load(bundle.compile()).runMain();
