/**
 * Conversions between _client.ts's types and the request/response objects of the `etcd3` package
 * (etcd's protobuf messages as protobufjs decodes them: int64 as decimal strings, enums by name).
 */
import type { ICompare, IKeyValue, IRequestOp, IResponseOp } from 'etcd3';
import type { Compare, DeleteOp, KeyValue, Op, OpResult, PutOp, RangeOp } from './_client.js';

/** Converts etcd3's key-value to ours. */
export function toKv(kv: IKeyValue): KeyValue {
  return {
    key: kv.key.toString(),
    value: kv.value.toString(),
    createRevision: BigInt(kv.create_revision),
    modRevision: BigInt(kv.mod_revision),
    version: BigInt(kv.version),
    lease: BigInt(kv.lease),
  };
}

const SORT_TARGET = { key: 'Key', create: 'Create', mod: 'Mod' } as const;
const COMPARE_RESULT = { '=': 'Equal', '!=': 'NotEqual', '<': 'Less', '>': 'Greater' } as const;
const COMPARE_TARGET = {
  create: 'Create',
  mod: 'Mod',
  version: 'Version',
  lease: 'Lease',
  value: 'Value',
} as const;
const COMPARE_FIELD = {
  create: 'create_revision',
  mod: 'mod_revision',
  version: 'version',
  lease: 'lease',
} as const;

/** An optional bigint as the decimal string protobufjs takes for int64 fields. */
export const int64 = (n: bigint | undefined) => (n === undefined ? undefined : String(n));

/** Our range op as etcd's RangeRequest. */
export function rangeRequest(op: Omit<RangeOp, 'type'>) {
  return {
    key: Buffer.from(op.key),
    range_end: op.rangeEnd === undefined ? undefined : Buffer.from(op.rangeEnd),
    limit: op.limit ?? 0,
    sort_order: op.sortOrder === undefined ? undefined : op.sortOrder === 'ascend' ? 'Ascend' : 'Descend',
    sort_target: op.sortBy === undefined ? undefined : SORT_TARGET[op.sortBy],
    keys_only: op.keysOnly ?? false,
    count_only: op.countOnly ?? false,
    revision: int64(op.revision),
    min_create_revision: int64(op.minCreateRevision),
    max_create_revision: int64(op.maxCreateRevision),
    min_mod_revision: int64(op.minModRevision),
    max_mod_revision: int64(op.maxModRevision),
  } as const;
}

/** Our put op as etcd's PutRequest. */
export function putRequest(op: Omit<PutOp, 'type'>) {
  return {
    key: Buffer.from(op.key),
    value: Buffer.from(op.value),
    lease: int64(op.lease),
    prev_kv: op.prevKv,
  };
}

/** Our delete op as etcd's DeleteRangeRequest. */
export function deleteRequest(op: Omit<DeleteOp, 'type'>) {
  const rangeEnd = op.rangeEnd === undefined ? undefined : Buffer.from(op.rangeEnd);
  return { key: Buffer.from(op.key), range_end: rangeEnd, prev_kv: op.prevKv };
}

/** Our compare as etcd's Compare. */
export function compareRequest(c: Compare): ICompare {
  const base: ICompare = {
    key: Buffer.from(c.key),
    range_end: c.rangeEnd === undefined ? undefined : Buffer.from(c.rangeEnd),
    result: COMPARE_RESULT[c.op],
    target: COMPARE_TARGET[c.target],
  };
  if (c.target === 'value') return { ...base, value: Buffer.from(c.value) };
  return { ...base, [COMPARE_FIELD[c.target]]: String(c.value) };
}

/** Our op as etcd's RequestOp. */
export function requestOp(op: Op): IRequestOp {
  if (op.type === 'range') return { request_range: rangeRequest(op) };
  if (op.type === 'put') return { request_put: putRequest(op) };
  return { request_delete_range: deleteRequest(op) };
}

/** etcd's ResponseOp for the op we sent as ours. */
export function opResult(op: Op, res: IResponseOp): OpResult {
  if (op.type === 'range') {
    const r = res.response_range;
    return { type: 'range', kvs: r.kvs.map(toKv), count: Number(r.count), more: r.more };
  }
  if (op.type === 'put') {
    const p = res.response_put;
    return { type: 'put', prevKv: p.prev_kv ? toKv(p.prev_kv) : undefined };
  }
  const d = res.response_delete_range;
  return { type: 'delete', deleted: Number(d.deleted), prevKvs: d.prev_kvs.map(toKv) };
}
