/** townlock/atomic: durable atomic file replacement and JSON reading with located errors. */
export { JsonParseError } from './errors.js';
export {
  type AtomicWriteOptions,
  PendingFile,
  removeStaleTempFiles,
  writeFileAtomic,
  writeFileAtomicSync,
} from './pending-file.js';
export { parseJson, readJsonFile } from './read-json.js';
