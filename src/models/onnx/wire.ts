import { WardenError } from '../../core/errors';

/**
 * Just enough of the protobuf wire format to splice a ModelProto without re-encoding it: the original bytes of
 * every field are copied as they are (unknown and future ONNX fields included), and new graph content is appended
 * to the graph message. Appending works because repeated fields of one message may be split over the message's
 * bytes in any order: a parser concatenates them (onnx-proto/protobufjs, ONNX Runtime and the onnx package alike).
 */

/** One field of a message: its tag starts at `start`, its payload (for wire type 2) spans [dataStart, end). */
export interface FieldSpan {
  field: number;
  wire: number;
  start: number;
  dataStart: number;
  end: number;
}

const notOnnx = (why: string): never => {
  throw new WardenError('MODEL_LOAD_FAILED', `Not an ONNX model (${why}).`);
};

function readVarint(bytes: Uint8Array, at: number, end: number): { value: number; next: number } {
  let value = 0;
  let mul = 1;
  for (let i = 0; i < 10; i++) {
    if (at >= end) notOnnx('truncated varint');
    const b = bytes[at++];
    value += (b & 0x7f) * mul;
    if ((b & 0x80) === 0) return { value, next: at };
    mul *= 128;
  }
  return notOnnx('varint too long');
}

/** The fields of one message, in file order. @throws MODEL_LOAD_FAILED on malformed bytes */
export function messageFields(bytes: Uint8Array, from = 0, to = bytes.length): FieldSpan[] {
  const out: FieldSpan[] = [];
  let pos = from;
  while (pos < to) {
    const start = pos;
    const tag = readVarint(bytes, pos, to);
    pos = tag.next;
    const field = Math.floor(tag.value / 8);
    const wire = tag.value & 7;
    if (field === 0) notOnnx('field number 0');
    let dataStart = pos;
    switch (wire) {
      case 0:
        pos = readVarint(bytes, pos, to).next;
        break;
      case 1:
        pos += 8;
        break;
      case 2: {
        const len = readVarint(bytes, pos, to);
        dataStart = len.next;
        pos = len.next + len.value;
        break;
      }
      case 5:
        pos += 4;
        break;
      default:
        notOnnx(`unsupported wire type ${wire}`);
    }
    if (pos > to) notOnnx('a field overruns its message');
    out.push({ field, wire, start, dataStart, end: pos });
  }
  return out;
}

export function encodeVarint(value: number): Uint8Array {
  const out: number[] = [];
  let v = value;
  while (v >= 0x80) {
    out.push((v % 128) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return Uint8Array.from(out);
}

/** tag + length + payload of a length-delimited field. */
export function lengthDelimited(field: number, payload: Uint8Array): Uint8Array {
  return concat([encodeVarint(field * 8 + 2), encodeVarint(payload.length), payload]);
}

export function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** ModelProto field numbers used here (onnx.proto). */
export const MODEL_FIELD = { graph: 7, metadataProps: 14 } as const;

export interface SpliceOptions {
  /** Encoded GraphProto holding only repeated fields (nodes, initializers, outputs): appended to the graph. */
  graphAppend: Uint8Array;
  /** metadata_props keys to drop (e.g. an older warden.manifest). */
  dropMetadataKeys: string[];
  /** metadata_props entries appended at the end. */
  metadata: { key: string; value: string }[];
}

/**
 * The model with `graphAppend` appended to its graph and metadata entries replaced; every other byte of the
 * original is copied unchanged and in order. @throws MODEL_LOAD_FAILED when the bytes are not a ModelProto
 */
export function spliceModel(model: Uint8Array, opts: SpliceOptions): Uint8Array {
  const fields = messageFields(model);
  const graphs = fields.filter((f) => f.field === MODEL_FIELD.graph && f.wire === 2);
  if (graphs.length === 0) notOnnx('no graph');
  const last = graphs[graphs.length - 1];
  const dec = new TextDecoder('utf-8');
  const parts: Uint8Array[] = [];
  for (const f of fields) {
    if (f === last) {
      parts.push(encodeVarint(MODEL_FIELD.graph * 8 + 2), encodeVarint(f.end - f.dataStart + opts.graphAppend.length));
      parts.push(model.subarray(f.dataStart, f.end), opts.graphAppend);
    } else if (f.field === MODEL_FIELD.metadataProps && f.wire === 2) {
      const key = messageFields(model, f.dataStart, f.end).find((e) => e.field === 1 && e.wire === 2);
      const name = key ? dec.decode(model.subarray(key.dataStart, key.end)) : undefined;
      if (name === undefined || !opts.dropMetadataKeys.includes(name)) parts.push(model.subarray(f.start, f.end));
    } else parts.push(model.subarray(f.start, f.end));
  }
  const enc = new TextEncoder();
  for (const { key, value } of opts.metadata) {
    parts.push(lengthDelimited(MODEL_FIELD.metadataProps, concat([lengthDelimited(1, enc.encode(key)), lengthDelimited(2, enc.encode(value))])));
  }
  return concat(parts);
}
