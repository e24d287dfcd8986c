/**
 * node:crypto, loaded on first use. Loading it costs ~4-8 ms of start-up (it pulls in Node's stream
 * stack), which commands that only read, such as `townlock machine list`, never need.
 */
import { createRequire } from 'node:module';

let loaded: typeof import('node:crypto') | undefined;

export function crypto(): typeof import('node:crypto') {
  // A builtin resolves from any base path; '/' keeps this free of import.meta (the CLI is also bundled).
  loaded ??= createRequire('/')('node:crypto') as typeof import('node:crypto');
  return loaded;
}
