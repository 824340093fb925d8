import { createHash } from 'node:crypto';
import { WardenError } from '../../core/errors';
import { MANIFEST_METADATA_KEY, parseManifest, type ModelManifest } from '../manifest';
import { viewGraph } from './graph';
import { inspectModel, type InspectOptions, type ModelInspection } from './inspect';
import { applySurgery, featureOutputs, planSurgery, type SurgeryPlan } from './surgery';
import { proveOriginalOutputsUnchanged, type ProofReport } from './verify';

/**
 * `warden model expose`: inspect → plan taps → graph surgery → manifest in metadata_props → proof that the original
 * outputs are bit-identical. Nothing is returned unless the proof holds.
 */

export type Preprocess = ModelManifest['preprocess'];

export interface ExposeOptions extends InspectOptions {
  /** 'auto' (default) = the inspection's suggested taps, or tensor names. */
  taps?: 'auto' | string[];
  classes: string[];
  preprocess: Preprocess;
  name: string;
  version?: string;
  /** Probe inputs of the proof (≥ 20 recommended). */
  probes?: number;
  seed?: number;
  /** The inspection of the same bytes, when the caller already made it (saves a probe run). */
  inspection?: ModelInspection;
}

export interface ExposeResult {
  bytes: Uint8Array;
  manifest: ModelManifest;
  inspection: ModelInspection;
  plan: SurgeryPlan;
  proof: ProofReport;
  originalSha256: string;
  sha256: string;
}

/** @throws USAGE, MODEL_LOAD_FAILED, MODEL_UNSUPPORTED_LAYOUT, MODEL_EXTERNAL_DATA, MODEL_MANIFEST_INVALID, MODEL_SURGERY_CHANGED_OUTPUTS */
export async function exposeModel(bytes: Uint8Array, opts: ExposeOptions): Promise<ExposeResult> {
  const inspection = opts.inspection ?? await inspectModel(bytes, opts);
  const view = viewGraph(bytes);
  const { input, logits } = inspection;
  if (!logits) throw new WardenError('USAGE', 'No logits output found (an output of shape [N, classes ≥ 2]): name it with --logits.');
  if (opts.classes.length !== logits.classes) {
    throw new WardenError('USAGE', `--classes names ${opts.classes.length} classes, but output '${logits.output}' has ${logits.classes} values per image.`);
  }
  const byName = new Map(inspection.candidates.map((c) => [c.name, c]));
  const tapNames = !opts.taps || opts.taps === 'auto' ? inspection.suggestedTaps : opts.taps;
  if (tapNames.length === 0) throw new WardenError('USAGE', 'No taps: the model has no 4-D feature map to tap; name tensors with --taps (see `warden model inspect`).');
  const taps = tapNames.map((t) => {
    const c = byName.get(t);
    if (!c) throw new WardenError('USAGE', `--taps ${t}: not a candidate tensor of this model (see \`warden model inspect\` for the list).`);
    if (!c.shape || c.shape.length !== 4) throw new WardenError('USAGE', `--taps ${t}: shape [${(c.shape ?? []).join(', ')}] is not a 4-D [N, C, H, W] feature map.`);
    return { tensor: t, channels: c.shape[1] };
  });
  const plan = planSurgery(view, taps, inspection.penultimate, logits);
  const originalSha256 = createHash('sha256').update(bytes).digest('hex');
  const manifest = parseManifest({
    schema: 1,
    name: opts.name,
    version: opts.version ?? `sha256:${originalSha256.slice(0, 12)}`,
    input: { name: input.name, shape: input.shape, layout: 'NCHW' },
    preprocess: opts.preprocess,
    classes: opts.classes,
    outputs: {
      logits: plan.logits?.output ?? logits.output,
      ...(plan.penultimate ? { penultimate: plan.penultimate.output } : {}),
      features: featureOutputs(plan),
    },
  }, 'the exposed model\'s manifest');
  const out = applySurgery(bytes, view, input, plan, [{ key: MANIFEST_METADATA_KEY, value: JSON.stringify(manifest) }]);
  const { scale, mean, std } = manifest.preprocess;
  const proof = await proveOriginalOutputsUnchanged(bytes, out, input, { probes: opts.probes, seed: opts.seed, range: { scale, mean, std } });
  for (const name of manifest.outputs.features) {
    const shape = proof.newOutputShapes[name];
    if (!shape || shape.length !== 2) {
      throw new WardenError('INTERNAL', `The new output ${name} has shape [${(shape ?? []).join(', ')}], not [N, D].`);
    }
  }
  return { bytes: out, manifest, inspection, plan, proof, originalSha256, sha256: createHash('sha256').update(out).digest('hex') };
}
