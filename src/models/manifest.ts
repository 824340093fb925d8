import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { z } from 'zod';
import { WardenError } from '../core/errors';
import { MODEL_FIELD, messageFields } from './onnx/wire';

/**
 * The model manifest (docs/model-manifest.md): read from the ONNX file's `metadata_props` key
 * `warden.manifest`, else from the sidecar `<model>.onnx.json`. Validated with zod; a bad manifest is
 * MODEL_MANIFEST_INVALID with the offending field named.
 */

export const MANIFEST_METADATA_KEY = 'warden.manifest';

const finite = z.number().refine(Number.isFinite, 'must be a finite number');

const dim = z.number().int().refine((d) => d === -1 || d > 0, 'must be -1 (dynamic) or a positive integer');

export const ManifestSchema = z
  .object({
    schema: z.literal(1),
    name: z.string().min(1),
    version: z.string().min(1),
    input: z.object({
      name: z.string().min(1),
      shape: z.tuple([dim, dim, dim, dim]),
      layout: z.literal('NCHW').default('NCHW'),
    }),
    preprocess: z.object({
      window: z.enum(['bits', 'voi', 'percentile', 'minmax', 'auto']),
      invertMonochrome1: z.boolean().default(true),
      resize: z.enum(['bilinear', 'nearest']).default('bilinear'),
      scale: z.tuple([finite, finite]).default([0, 1]),
      mean: z.array(finite).min(1).default([0]),
      std: z.array(finite.refine((s) => s !== 0, 'must not be 0')).min(1).default([1]),
    }),
    classes: z.array(z.string().min(1)).min(1),
    outputs: z.object({
      logits: z.string().min(1),
      penultimate: z.string().min(1).optional(),
      features: z.array(z.string().min(1)).default([]),
    }),
  })
  .superRefine((m, ctx) => {
    const [, c, h, w] = m.input.shape;
    if (c !== 1 && c !== 3) ctx.addIssue({ code: 'custom', path: ['input', 'shape', 1], message: 'channels must be 1 or 3' });
    if (h < 1) ctx.addIssue({ code: 'custom', path: ['input', 'shape', 2], message: 'height must be fixed (> 0)' });
    if (w < 1) ctx.addIssue({ code: 'custom', path: ['input', 'shape', 3], message: 'width must be fixed (> 0)' });
    for (const key of ['mean', 'std'] as const) {
      const n = m.preprocess[key].length;
      if (n !== 1 && n !== c) {
        ctx.addIssue({ code: 'custom', path: ['preprocess', key], message: `must have 1 or ${c} values (one per channel)` });
      }
    }
    if (m.outputs.penultimate !== undefined && !m.outputs.features.includes(m.outputs.penultimate)) {
      ctx.addIssue({ code: 'custom', path: ['outputs', 'penultimate'], message: 'must be one of outputs.features' });
    }
    if (m.outputs.features.includes(m.outputs.logits)) {
      ctx.addIssue({ code: 'custom', path: ['outputs', 'logits'], message: 'must not also be a feature output' });
    }
    if (new Set(m.outputs.features).size !== m.outputs.features.length) {
      ctx.addIssue({ code: 'custom', path: ['outputs', 'features'], message: 'must not repeat a name' });
    }
  });

export type ModelManifest = z.infer<typeof ManifestSchema>;

export interface LoadedModel {
  path: string;
  manifest: ModelManifest;
  /** Where the manifest came from. */
  manifestSource: 'metadata' | 'sidecar';
  /** sha256 of the model file, hex. Detector bundles are bound to it. */
  sha256: string;
  /** All metadata_props of the model (key → value). */
  metadata: Record<string, string>;
  sizeBytes: number;
}

/** Validates a manifest object (already JSON-parsed). @throws MODEL_MANIFEST_INVALID naming the field. */
export function parseManifest(value: unknown, origin = 'manifest'): ModelManifest {
  const res = ManifestSchema.safeParse(value);
  if (res.success) return res.data;
  const issue = res.error.issues[0];
  const field = issue.path.length ? issue.path.map(String).join('.') : '(root)';
  const more = res.error.issues.length > 1 ? ` (+${res.error.issues.length - 1} more)` : '';
  throw new WardenError('MODEL_MANIFEST_INVALID', `${origin}: field ${field}: ${issue.message}${more}`, {
    detail: { field, issues: res.error.issues.map((i) => ({ field: i.path.map(String).join('.'), message: i.message })) },
  });
}

/** Parses a manifest JSON string. @throws MODEL_MANIFEST_INVALID */
export function parseManifestJson(text: string, origin = 'manifest'): ModelManifest {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new WardenError('MODEL_MANIFEST_INVALID', `${origin}: not valid JSON (${(err as Error).message})`, { cause: err });
  }
  return parseManifest(value, origin);
}

/**
 * Reads `metadata_props` from an ONNX ModelProto without decoding the graph: walks only the top-level
 * protobuf fields and skips the (large) graph by its length prefix. ModelProto field 14 = metadata_props
 * (StringStringEntryProto: 1 = key, 2 = value).
 * @throws MODEL_LOAD_FAILED when the bytes are not a well-formed protobuf message.
 */
export function readOnnxMetadataProps(bytes: Uint8Array): Record<string, string> {
  const out: Record<string, string> = {};
  const dec = new TextDecoder('utf-8');
  const fields = messageFields(bytes);
  if (!fields.some((f) => f.field === MODEL_FIELD.graph && f.wire === 2)) throw new WardenError('MODEL_LOAD_FAILED', 'Not an ONNX model (no graph).');
  for (const f of fields) {
    if (f.field !== MODEL_FIELD.metadataProps || f.wire !== 2) continue;
    let key: string | undefined;
    let value = '';
    for (const e of messageFields(bytes, f.dataStart, f.end)) {
      if (e.wire !== 2) continue;
      if (e.field === 1) key = dec.decode(bytes.subarray(e.dataStart, e.end));
      else if (e.field === 2) value = dec.decode(bytes.subarray(e.dataStart, e.end));
    }
    if (key !== undefined) out[key] = value;
  }
  return out;
}

/**
 * Loads the manifest and sha256 of a model file.
 * @throws MODEL_LOAD_FAILED (unreadable / not ONNX), MODEL_MANIFEST_INVALID (missing or invalid manifest)
 */
export async function loadModelManifest(modelPath: string): Promise<LoadedModel> {
  let bytes: Buffer;
  try {
    bytes = await fsp.readFile(modelPath);
  } catch (err) {
    throw new WardenError('MODEL_LOAD_FAILED', `Cannot read model ${modelPath}: ${(err as Error).message}`, { cause: err });
  }
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const metadata = readOnnxMetadataProps(bytes);
  const embedded = metadata[MANIFEST_METADATA_KEY];
  if (embedded !== undefined) {
    return {
      path: modelPath, sha256, metadata, sizeBytes: bytes.length, manifestSource: 'metadata',
      manifest: parseManifestJson(embedded, `${modelPath} metadata_props[${MANIFEST_METADATA_KEY}]`),
    };
  }
  const sidecar = `${modelPath}.json`;
  let text: string;
  try {
    text = await fsp.readFile(sidecar, 'utf8');
  } catch {
    throw new WardenError('MODEL_MANIFEST_INVALID',
      `${modelPath} has no ${MANIFEST_METADATA_KEY} in its metadata_props and no sidecar ${sidecar}`, { detail: { field: '(root)' } });
  }
  return {
    path: modelPath, sha256, metadata, sizeBytes: bytes.length, manifestSource: 'sidecar',
    manifest: parseManifestJson(text, sidecar),
  };
}
