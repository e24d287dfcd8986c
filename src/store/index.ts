/**
 * townlock/store: the registry's guarantees for every shared file: JSON state files (JsonFile),
 * append-only JSON Lines logs (JsonlLog) and task queues (JsonlQueue). See docs/store.md.
 */
export {
  LeaseExpiredError,
  LogTornError,
  StoreCorruptError,
  StoreInvalidError,
  StoreIoError,
  StoreReentrantError,
} from './errors.js';
export { JsonFile, type JsonFileOptions } from './json-file.js';
export {
  JsonlLog,
  type JsonlLogOptions,
  type LogEntry,
  type LogReadOptions,
  type TornLine,
} from './jsonl-log.js';
export { JsonlQueue, type JsonlQueueOptions, type Lease } from './jsonl-queue.js';
