#!/usr/bin/env node
// The townlock command. The CLI lives in dist/ (built by `npm ci` through the prepare script).
import { runMain } from '../dist/cli/main.js';

await runMain();
