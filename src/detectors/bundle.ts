/**
 * Bundle file format (version 1), one file:
 *
 *   bytes 0..7    magic "WDNBNDL1"
 *   bytes 8..11   header length H (uint32 LE)
 *   bytes 12..    header: UTF-8 JSON (schema below), padded with spaces to a multiple of 8 bytes
 *   then          the data blob: every array little-endian, each starting at an 8-byte aligned offset
 *
 * The header carries the format version, the model's sha256 (a bundle for another model refuses to load),
 * the feature layers and their dimensions, per-detector hyper-parameters and small fitted metadata, the
 * calibration size and target FPRs, the creation time, and an index {name, dtype, length, offset} of the
 * binary arrays (float32 banks, float64 means/precisions/calibration scores, int32 indices). numpy reads the
 * arrays with np.frombuffer(blob, dtype, count, offset) — see lab/detectors/bundle.py.
 */

import * as fs from 'node:fs';
import { z } from 'zod';
import { WardenError } from '../core/errors';
import type { DetectorState, StateArray } from './detector';

export const BUNDLE_MAGIC = 'WDNBNDL1';
export const BUNDLE_FORMAT_VERSION = 1;

const DTYPES = { f32: Float32Array, f64: Float64Array, i32: Int32Array } as const;
type Dtype = keyof typeof DTYPES;

const arrayEntry = z.object({
  name: z.string().min(1),
  dtype: z.enum(['f32', 'f64', 'i32']),
  length: z.number().int().nonnegative(),
  offset: z.number().int().nonnegative(),
});

const detectorEntry = z.object({
  /** Unique id in the bundle; the key of the scores ('kd', 'uad', 'uad_shallow', …). */
  id: z.string().regex(/^[a-z][a-z0-9_]*$/),
  /** Registry name of the implementation. */
  kind: z.string().min(1),
  version: z.number().int().positive(),
  params: z.record(z.string(), z.unknown()),
  layers: z.record(z.string(), z.number().int().positive()),
  meta: z.record(z.string(), z.unknown()),
  arrays: z.array(arrayEntry),
});

export const bundleHeaderSchema = z.object({
  format: z.literal('warden-detector-bundle'),
  version: z.literal(BUNDLE_FORMAT_VERSION),
  createdAt: z.string(),
  model: z.object({ sha256: z.string().regex(/^[0-9a-f]{64}$/), file: z.string().optional() }),
  numClasses: z.number().int().positive(),
  layers: z.record(z.string(), z.number().int().positive()),
  fit: z.object({ n: z.number().int().nonnegative(), source: z.string().optional() }).passthrough(),
  calibration: z
    .object({ n: z.number().int().nonnegative(), source: z.string().optional(), targetFpr: z.object({ flag: z.number(), block: z.number() }) })
    .passthrough(),
  detectors: z.array(detectorEntry).min(1),
  info: z.record(z.string(), z.unknown()).optional(),
});

export type BundleHeader = z.infer<typeof bundleHeaderSchema>;

export interface BundleDetectorRecord {
  id: string;
  kind: string;
  state: DetectorState;
}

export interface BundleContents {
  header: Omit<BundleHeader, 'detectors'>;
  detectors: BundleDetectorRecord[];
}

function dtypeOf(a: StateArray): Dtype {
  if (a instanceof Float32Array) return 'f32';
  if (a instanceof Float64Array) return 'f64';
  return 'i32';
}

/** Serialises a bundle to bytes. */
export function encodeBundle(contents: BundleContents): Buffer {
  const chunks: Buffer[] = [];
  let offset = 0;
  const detectors: BundleHeader['detectors'] = contents.detectors.map((d) => {
    const arrays = Object.entries(d.state.arrays).map(([name, a]) => {
      const buf = Buffer.from(a.buffer, a.byteOffset, a.byteLength);
      const entry = { name, dtype: dtypeOf(a), length: a.length, offset };
      chunks.push(Buffer.from(buf)); // copy: the state may be a view
      offset += buf.length;
      const pad = (8 - (offset % 8)) % 8;
      if (pad) {
        chunks.push(Buffer.alloc(pad));
        offset += pad;
      }
      return entry;
    });
    return { id: d.id, kind: d.kind, version: d.state.version, params: d.state.params, layers: d.state.layers, meta: d.state.meta, arrays };
  });
  const header: BundleHeader = { ...contents.header, detectors };
  bundleHeaderSchema.parse(header);
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  const pad = (8 - ((12 + json.length) % 8)) % 8;
  if (pad) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const pre = Buffer.alloc(12);
  pre.write(BUNDLE_MAGIC, 0, 'ascii');
  pre.writeUInt32LE(json.length, 8);
  return Buffer.concat([pre, json, ...chunks]);
}

/** Parses and validates bundle bytes. @throws BUNDLE_INVALID */
export function decodeBundle(bytes: Buffer, label = 'bundle'): BundleContents & { header: BundleHeader } {
  if (bytes.length < 12 || bytes.toString('ascii', 0, 8) !== BUNDLE_MAGIC) {
    throw new WardenError('BUNDLE_INVALID', `${label} is not a Warden detector bundle (bad magic; expected '${BUNDLE_MAGIC}').`);
  }
  const hlen = bytes.readUInt32LE(8);
  if (12 + hlen > bytes.length) throw new WardenError('BUNDLE_INVALID', `${label} is truncated: its header claims ${hlen} bytes.`);
  let raw: unknown;
  try {
    raw = JSON.parse(bytes.toString('utf8', 12, 12 + hlen));
  } catch (err) {
    throw new WardenError('BUNDLE_INVALID', `${label} has a header that is not valid JSON.`, { cause: err });
  }
  const v = (raw as { version?: unknown } | null)?.version;
  if (typeof v === 'number' && v !== BUNDLE_FORMAT_VERSION) {
    throw new WardenError('BUNDLE_INVALID', `${label} has format version ${v}; this Warden reads version ${BUNDLE_FORMAT_VERSION}. Refit it with \`warden fit\`.`);
  }
  const parsed = bundleHeaderSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new WardenError('BUNDLE_INVALID', `${label} has an invalid header: ${issue.path.join('.') || '(root)'}: ${issue.message}.`);
  }
  const header = parsed.data;
  const blobStart = 12 + hlen;
  const blobLen = bytes.length - blobStart;
  const ids = new Set<string>();
  const detectors = header.detectors.map((d) => {
    if (ids.has(d.id)) throw new WardenError('BUNDLE_INVALID', `${label} lists detector '${d.id}' twice.`);
    ids.add(d.id);
    const arrays: Record<string, StateArray> = {};
    for (const a of d.arrays) {
      const Ctor = DTYPES[a.dtype];
      const byteLen = a.length * Ctor.BYTES_PER_ELEMENT;
      if (a.offset + byteLen > blobLen) {
        throw new WardenError('BUNDLE_INVALID', `${label}: array '${a.name}' of detector '${d.id}' runs past the end of the file (truncated?).`);
      }
      const copy = new Uint8Array(byteLen);
      copy.set(bytes.subarray(blobStart + a.offset, blobStart + a.offset + byteLen));
      arrays[a.name] = new Ctor(copy.buffer, 0, a.length);
    }
    const state: DetectorState = { name: d.kind, version: d.version, params: d.params, layers: d.layers, meta: d.meta, arrays };
    return { id: d.id, kind: d.kind, state };
  });
  return { header, detectors };
}

export function writeBundleFile(path: string, contents: BundleContents): void {
  const bytes = encodeBundle(contents);
  const tmp = `${path}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, bytes);
  fs.renameSync(tmp, path);
}

export function readBundleFile(path: string): BundleContents & { header: BundleHeader } {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(path);
  } catch (err) {
    throw new WardenError('BUNDLE_INVALID', `Cannot read the detector bundle ${path}: ${(err as Error).message}.`, { cause: err });
  }
  return decodeBundle(bytes, `The detector bundle ${path}`);
}
