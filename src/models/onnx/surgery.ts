import { onnx } from 'onnx-proto';
import type { GraphView, ImageInput } from './graph';
import type { LogitsInfo, PenultimateInfo } from './inspect';
import { spliceModel } from './wire';

/**
 * The graph surgery of `warden model expose`: new nodes only, appended after the original ones; no original node,
 * initializer, input or output is touched (spliceModel copies their bytes). Per tap x ([N, C, H, W]):
 *   <tap>_mean = Flatten(GlobalAveragePool(x))                                 [N, C]
 *   <tap>_std  = Flatten(Sqrt(GlobalAveragePool((x − GAP(x))²) + 1e-6))          [N, C]
 * (the reference model's stage statistics; GlobalAveragePool instead of ReduceMean because its form is the same in
 * every opset, whereas ReduceMean moved its axes from an attribute to an input in opset 18), plus `penultimate`
 * (the classifier's input, pooled when it is a conv map) and, when the model ends in a Softmax, `logits` (its input).
 */

export interface TapPlan {
  /** The tensor tapped. */
  tensor: string;
  channels: number;
  /** Output names of its statistics. */
  mean: string;
  std: string;
}

export interface SurgeryPlan {
  taps: TapPlan[];
  penultimate?: { source: PenultimateInfo; output: string; dim: number };
  logits?: { source: LogitsInfo; output: string };
}

const FLOAT = 1;
const ATTR_INT = 2;
const STD_EPSILON = 1e-6;

/**
 * A readable, unique output name from a tensor name. Exporters such as torch write '/<path>/<module.path>/<Op>_output_0',
 * where the last module segment already holds the whole path: '/m/stages.0/stages.0.1/Relu_1_output_0' → 'stages_0_1_relu_1'.
 */
export function featureName(tensor: string, taken: Set<string>): string {
  const segments = tensor.replace(/_output_\d+$/, '').split('/').filter(Boolean);
  const tail = segments.length > 2 ? segments.slice(-2) : segments;
  let base = tail.join('_').split(/[^A-Za-z0-9]+/).filter(Boolean).join('_').toLowerCase() || 'tap';
  if (/^[0-9]/.test(base)) base = `t${base}`;
  let name = base;
  for (let k = 2; taken.has(`${name}_mean`) || taken.has(`${name}_std`) || taken.has(name); k++) name = `${base}_${k}`;
  return name;
}

/** Plans the new outputs; names avoid every name already in the graph. */
export function planSurgery(view: GraphView, taps: { tensor: string; channels: number }[], penultimate?: PenultimateInfo, logits?: LogitsInfo): SurgeryPlan {
  const taken = new Set(view.names);
  const unique = (want: string) => {
    let name = want;
    for (let k = 2; taken.has(name); k++) name = `${want}_${k}`;
    taken.add(name);
    return name;
  };
  const plan: SurgeryPlan = { taps: [] };
  if (logits?.softmax) plan.logits = { source: logits, output: unique('logits') };
  if (penultimate) plan.penultimate = { source: penultimate, output: unique('penultimate'), dim: penultimate.shape[1] };
  for (const t of taps) {
    const base = featureName(t.tensor, taken);
    plan.taps.push({ tensor: t.tensor, channels: t.channels, mean: unique(`${base}_mean`), std: unique(`${base}_std`) });
  }
  return plan;
}

/** Feature output names in manifest order: every tap's mean and std, then the penultimate. */
export function featureOutputs(plan: SurgeryPlan): string[] {
  return [...plan.taps.flatMap((t) => [t.mean, t.std]), ...(plan.penultimate ? [plan.penultimate.output] : [])];
}

/** The model bytes with the plan's nodes and outputs added and the metadata entries set. */
export function applySurgery(bytes: Uint8Array, view: GraphView, input: ImageInput, plan: SurgeryPlan, metadata: { key: string; value: string }[]): Uint8Array {
  const taken = new Set(view.names);
  for (const t of plan.taps) taken.add(t.mean).add(t.std);
  const internal = (want: string) => {
    let name = `warden/${want}`;
    for (let k = 2; taken.has(name); k++) name = `warden/${want}_${k}`;
    taken.add(name);
    return name;
  };
  const nodes: onnx.INodeProto[] = [];
  const node = (opType: string, inputs: string[], output: string, attribute?: onnx.IAttributeProto[]) => {
    nodes.push({ opType, input: inputs, output: [output], name: internal(`${output.replace(/^warden\//, '')}/${opType}`), ...(attribute ? { attribute } : {}) });
    return output;
  };
  const flatten = (x: string, out: string) => node('Flatten', [x], out, [{ name: 'axis', i: 1, type: ATTR_INT }]);
  const batch: onnx.TensorShapeProto.IDimension = input.fixedBatch !== undefined ? { dimValue: input.fixedBatch } : { dimParam: input.batchParam ?? 'N' };
  const outputs: onnx.IValueInfoProto[] = [];
  const declare = (name: string, dim: number) => outputs.push({ name, type: { tensorType: { elemType: FLOAT, shape: { dim: [batch, { dimValue: dim }] } } } });

  if (plan.logits) {
    node('Identity', [plan.logits.source.tensor], plan.logits.output);
    declare(plan.logits.output, plan.logits.source.classes);
  }
  const epsilon = plan.taps.length ? internal('epsilon') : '';
  for (const t of plan.taps) {
    const mean4 = node('GlobalAveragePool', [t.tensor], internal(`${t.mean}/pooled`));
    flatten(mean4, t.mean);
    const centred = node('Sub', [t.tensor, mean4], internal(`${t.std}/centred`));
    const squared = node('Mul', [centred, centred], internal(`${t.std}/squared`));
    const variance = node('GlobalAveragePool', [squared], internal(`${t.std}/variance`));
    const stabilised = node('Add', [variance, epsilon], internal(`${t.std}/variance_eps`));
    flatten(node('Sqrt', [stabilised], internal(`${t.std}/sd`)), t.std);
    declare(t.mean, t.channels);
    declare(t.std, t.channels);
  }
  if (plan.penultimate) {
    const p = plan.penultimate;
    if (p.source.pool) flatten(node('GlobalAveragePool', [p.source.tensor], internal(`${p.output}/pooled`)), p.output);
    else node('Identity', [p.source.tensor], p.output);
    declare(p.output, p.dim);
  }
  const initializer: onnx.ITensorProto[] = epsilon
    ? [{ name: epsilon, dims: [], dataType: FLOAT, rawData: new Uint8Array(Float32Array.of(STD_EPSILON).buffer) }]
    : [];
  const graphAppend = onnx.GraphProto.encode({ node: nodes, initializer, output: outputs } as onnx.IGraphProto).finish();
  return spliceModel(bytes, { graphAppend, dropMetadataKeys: metadata.map((m) => m.key), metadata });
}
