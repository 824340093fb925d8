import { WardenError } from '../../core/errors';
import { imageInputOf, refuseExternalData, viewGraph, type GraphView, type ImageInput, type IoInfo } from './graph';
import { runInWorker } from './runtime';

/**
 * `warden model inspect`: what a sealed classifier offers for taps. Shapes come from a probe run (ONNX Runtime on
 * a copy of the model that exposes the candidate tensors as outputs, in bounded chunks), which is exact whatever
 * value_info the exporter left.
 */

/** Node types whose output can be a tap: convolutions, normalisation, activations and block outputs. */
const ACTIVATION_OPS = new Set(['Relu', 'LeakyRelu', 'PRelu', 'Elu', 'Selu', 'Celu', 'Clip', 'HardSwish', 'HardSigmoid', 'Sigmoid', 'Gelu', 'Mish', 'Softplus']);
const BLOCK_OPS = new Set(['Add', 'Sum', 'Concat', 'MaxPool', 'AveragePool', 'LpPool']);
const CANDIDATE_OPS = new Set(['Conv', 'ConvTranspose', 'BatchNormalization', ...ACTIVATION_OPS, ...BLOCK_OPS]);
/** Nodes walked through from the logits back to the classifier's last linear layer. */
const PASS_THROUGH_OPS = new Set(['Identity', 'Dropout', 'Flatten', 'Reshape', 'Squeeze', 'Unsqueeze', 'Add', 'Softmax', 'LogSoftmax']);
/** Above this many values a flattened conv map is pooled per channel instead of used as the penultimate layer. */
const MAX_PENULTIMATE_DIM = 4096;
/** Tensors fetched per probe session (bounds the memory one probe run holds). */
const PROBE_CHUNK = 64;
/** Candidates probed at most; a larger graph is sampled evenly (and says so). */
const MAX_PROBED = 2048;

export interface TapCandidate {
  /** Tensor name (a node output). */
  name: string;
  op: string;
  /** Position of the producing node in the (topologically sorted) graph. */
  nodeIndex: number;
  /** Convolutions on the longest path from the input. */
  convDepth: number;
  /** Shape from the probe run (batch as run). */
  shape?: number[];
  /** An activation output, or a block output (Add/Concat/pooling) not followed only by an activation. */
  preferred: boolean;
}

export interface TapGroup {
  /** Spatial size, e.g. '56x56'. */
  resolution: string;
  /** Candidate tensor names at that size, in graph order. */
  tensors: string[];
}

export interface LogitsInfo {
  /** The model output the classes are read from. */
  output: string;
  /** The tensor Warden reads as logits: the output itself, or the input of a final Softmax. */
  tensor: string;
  classes: number;
  /** The output is a Softmax of `tensor`. */
  softmax: boolean;
}

export interface PenultimateInfo {
  /** Tensor whose values (pooled when `pool`) become the `penultimate` feature. */
  tensor: string;
  shape: number[];
  /** Global-average-pool a 4-D map instead of reading it as is. */
  pool: boolean;
  /** The classifier layer it feeds. */
  feeds: string;
}

export interface ModelInspection {
  irVersion: number;
  opset: number;
  producer: string;
  input: ImageInput;
  outputs: (IoInfo & { probedShape?: number[] })[];
  logits?: LogitsInfo;
  penultimate?: PenultimateInfo;
  candidates: TapCandidate[];
  groups: TapGroup[];
  suggestedTaps: string[];
  notes: string[];
}

export interface InspectOptions {
  /** Height and width for models whose input size is symbolic. */
  inputSize?: [number, number];
  /** Name of the logits output when the model has several [N, K] outputs. */
  logits?: string;
}

/** @throws MODEL_LOAD_FAILED, MODEL_UNSUPPORTED_LAYOUT, MODEL_EXTERNAL_DATA, USAGE */
export async function inspectModel(bytes: Uint8Array, opts: InspectOptions = {}): Promise<ModelInspection> {
  const view = viewGraph(bytes);
  refuseExternalData(view);
  const input = imageInputOf(view, opts.inputSize);
  const notes: string[] = [];
  if (view.opset > 0 && view.opset < 7) {
    throw new WardenError('MODEL_UNSUPPORTED_LAYOUT', `The model uses ONNX opset ${view.opset}; expose needs opset 7 or later (broadcasting Sub/Mul/Add).`);
  }

  const depth = convDepths(view);
  let candidates: TapCandidate[] = [];
  view.nodes.forEach((n, i) => {
    const out = n.output?.[0];
    if (!out || !CANDIDATE_OPS.has(n.opType ?? '')) return;
    candidates.push({ name: out, op: n.opType ?? '', nodeIndex: i, convDepth: depth.get(out) ?? 0, preferred: false });
  });
  if (candidates.length > MAX_PROBED) {
    const step = candidates.length / MAX_PROBED;
    notes.push(`${candidates.length} candidate tensors; ${MAX_PROBED} of them (evenly spaced) were probed.`);
    candidates = Array.from({ length: MAX_PROBED }, (_, k) => candidates[Math.floor(k * step)]);
  }
  const head = headChain(view);
  const outputNames = view.outputs.map((o) => o.name);
  const shapes = await probeShapes(bytes, input, [...new Set([...outputNames, ...candidates.map((c) => c.name), ...head])]);
  for (const c of candidates) c.shape = shapes.get(c.name);

  const outputs = view.outputs.map((o) => ({ ...o, probedShape: shapes.get(o.name) }));
  const logits = findLogits(view, outputs, opts.logits);
  const penultimate = logits ? findPenultimate(view, logits.tensor, shapes) : undefined;
  if (!logits) notes.push('No output of shape [N, classes] (classes ≥ 2) was found: name the logits output with --logits.');
  else if (!penultimate) notes.push('The classifier\'s last linear layer (Gemm/MatMul) was not found: no penultimate feature (KD and MGM need one).');

  const spatial = candidates.filter((c) => c.shape && c.shape.length === 4 && c.shape[2] * c.shape[3] > 1 && c.shape[1] > 1);
  for (const c of spatial) c.preferred = isPreferred(view, c);
  const groups = groupByResolution(spatial);
  // Suggested taps lie on the path that computes the logits (not on side branches such as extra outputs).
  const onPath = logits ? ancestors(view, logits.tensor) : undefined;
  const pathSpatial = onPath ? spatial.filter((c) => onPath.has(c.name)) : spatial;
  const suggestedTaps = suggestTaps(pathSpatial, groupByResolution(pathSpatial));
  if (suggestedTaps.length < 3) notes.push(`Only ${suggestedTaps.length} spatial feature map(s) found; UAD and LID work best with 3–6 layers.`);
  return { irVersion: view.irVersion, opset: view.opset, producer: view.producer, input, outputs, logits, penultimate, candidates, groups, suggestedTaps, notes };
}

/** Convolutions on the longest path from the input to each tensor (nodes are topologically sorted in ONNX). */
function convDepths(view: GraphView): Map<string, number> {
  const depth = new Map<string, number>();
  for (const n of view.nodes) {
    const d = Math.max(0, ...(n.input ?? []).map((t) => depth.get(t) ?? 0)) + (n.opType === 'Conv' || n.opType === 'ConvTranspose' ? 1 : 0);
    for (const o of n.output ?? []) depth.set(o, d);
  }
  return depth;
}

/** Every tensor the given tensor is computed from. */
function ancestors(view: GraphView, tensor: string): Set<string> {
  const seen = new Set<string>();
  const stack = [tensor];
  while (stack.length) {
    const t = stack.pop()!;
    if (seen.has(t)) continue;
    seen.add(t);
    const i = view.producerOf.get(t);
    if (i !== undefined) for (const x of view.nodes[i].input ?? []) if (x && !seen.has(x)) stack.push(x);
  }
  return seen;
}

/** Tensors between the outputs and the classifier's last linear layer (their shapes decide the penultimate). */
function headChain(view: GraphView): string[] {
  const out: string[] = [];
  for (const o of view.outputs) {
    let t = o.name;
    for (let step = 0; step < 12; step++) {
      const i = view.producerOf.get(t);
      if (i === undefined) break;
      const n = view.nodes[i];
      const data = (n.input ?? []).filter((x) => x && !view.initializers.has(x));
      out.push(...data);
      if (n.opType === 'Gemm' || n.opType === 'MatMul') {
        const src = view.producerOf.get(data[0] ?? '');
        if (src !== undefined && ['Flatten', 'Reshape'].includes(view.nodes[src].opType ?? '')) out.push(...(view.nodes[src].input ?? []).filter((x) => x && !view.initializers.has(x)));
        break;
      }
      if (!PASS_THROUGH_OPS.has(n.opType ?? '') || data.length !== 1) break;
      t = data[0];
    }
  }
  return out;
}

/** Shapes from a probe run (in the worker, a bounded chunk of tensors per session). */
async function probeShapes(bytes: Uint8Array, input: ImageInput, tensors: string[]): Promise<Map<string, number[]>> {
  const { shapes } = await runInWorker({ kind: 'shapes', model: bytes, input, tensors, chunk: PROBE_CHUNK });
  return new Map(Object.entries(shapes));
}

function findLogits(view: GraphView, outputs: ModelInspection['outputs'], name?: string): LogitsInfo | undefined {
  const is2d = (o: ModelInspection['outputs'][number]) => o.elemType === 'float32' && o.probedShape?.length === 2 && o.probedShape[1] >= 2;
  let pick: ModelInspection['outputs'][number] | undefined;
  if (name !== undefined) {
    pick = outputs.find((o) => o.name === name);
    if (!pick) throw new WardenError('USAGE', `--logits ${name}: the model has no output of that name (outputs: ${outputs.map((o) => o.name).join(', ')}).`);
    if (!is2d(pick)) throw new WardenError('USAGE', `--logits ${name}: that output is ${pick.elemType} [${(pick.probedShape ?? []).join(', ')}], not float32 [N, classes ≥ 2].`);
  } else {
    let cands = outputs.filter(is2d);
    if (cands.length > 1 && cands.filter((o) => /logit/i.test(o.name)).length === 1) cands = cands.filter((o) => /logit/i.test(o.name));
    if (cands.length > 1) {
      throw new WardenError('USAGE', `Several outputs could be the logits (${cands.map((o) => o.name).join(', ')}): name one with --logits.`);
    }
    pick = cands[0];
  }
  if (!pick) return undefined;
  const prod = view.producerOf.get(pick.name);
  const node = prod === undefined ? undefined : view.nodes[prod];
  const softmax = node?.opType === 'Softmax';
  return { output: pick.name, tensor: softmax ? node!.input![0] : pick.name, classes: pick.probedShape![1], softmax };
}

function findPenultimate(view: GraphView, logitsTensor: string, shapes: Map<string, number[]>): PenultimateInfo | undefined {
  let t = logitsTensor;
  for (let step = 0; step < 12; step++) {
    const i = view.producerOf.get(t);
    if (i === undefined) return undefined;
    const n = view.nodes[i];
    const data = (n.input ?? []).filter((x) => x && !view.initializers.has(x));
    if (n.opType === 'Gemm' || n.opType === 'MatMul') {
      if (data.length !== 1) return undefined;
      const p = data[0];
      const shape = shapes.get(p);
      if (!shape) return undefined;
      if (shape.length === 4) return { tensor: p, shape, pool: true, feeds: n.name || n.opType };
      if (shape.length !== 2) return undefined;
      const src = view.producerOf.get(p);
      const srcNode = src === undefined ? undefined : view.nodes[src];
      const srcIn = srcNode?.input?.[0];
      const srcShape = srcIn ? shapes.get(srcIn) : undefined;
      if (shape[1] > MAX_PENULTIMATE_DIM && srcNode && ['Flatten', 'Reshape'].includes(srcNode.opType ?? '') && srcShape?.length === 4) {
        return { tensor: srcIn!, shape: srcShape, pool: true, feeds: n.name || n.opType };
      }
      return { tensor: p, shape, pool: false, feeds: n.name || n.opType };
    }
    if (!PASS_THROUGH_OPS.has(n.opType ?? '') || data.length !== 1) return undefined;
    t = data[0];
  }
  return undefined;
}

/** Prefer what a block hands on: activations, and block outputs not consumed only by an activation. */
function isPreferred(view: GraphView, c: TapCandidate): boolean {
  if (ACTIVATION_OPS.has(c.op)) return true;
  if (!BLOCK_OPS.has(c.op)) return false;
  const next = view.consumersOf.get(c.name) ?? [];
  return !(next.length > 0 && next.every((i) => ACTIVATION_OPS.has(view.nodes[i].opType ?? '')));
}

function groupByResolution(spatial: TapCandidate[]): TapGroup[] {
  const groups = new Map<string, string[]>();
  for (const c of spatial) {
    const key = `${c.shape![2]}x${c.shape![3]}`;
    groups.set(key, [...(groups.get(key) ?? []), c.name]);
  }
  return [...groups].map(([resolution, tensors]) => ({ resolution, tensors }));
}

/**
 * One tap per spatial resolution (the deepest preferred tensor there: the stage's output), at most 6 spread from
 * the first to the last stage; with fewer than 3 resolutions, more taps evenly spaced inside the largest stages.
 */
export function suggestTaps(spatial: TapCandidate[], groups: TapGroup[]): string[] {
  const byName = new Map(spatial.map((c) => [c.name, c]));
  const pool = (g: TapGroup) => {
    const all = g.tensors.map((t) => byName.get(t)!);
    const pref = all.filter((c) => c.preferred);
    return pref.length ? pref : all;
  };
  let stages = groups.map((g) => pool(g).reduce((a, b) => (b.nodeIndex > a.nodeIndex ? b : a)).name);
  if (stages.length > 6) stages = Array.from({ length: 6 }, (_, k) => stages[Math.round((k * (stages.length - 1)) / 5)]);
  const chosen = new Set(stages);
  const extra = groups.map(pool).sort((a, b) => b.length - a.length);
  for (let round = 1; chosen.size < 3 && round < 8; round++) {
    for (const members of extra) {
      if (chosen.size >= 3) break;
      const c = members[Math.floor((members.length * round) / (round + 1)) - 1] ?? members[0];
      if (c && !chosen.has(c.name)) chosen.add(c.name);
    }
    if (extra.every((m) => m.every((c) => chosen.has(c.name)))) break;
  }
  return spatial.filter((c) => chosen.has(c.name)).sort((a, b) => a.nodeIndex - b.nodeIndex).map((c) => c.name);
}
