import { onnx } from 'onnx-proto';
import { WardenError } from '../../core/errors';

/**
 * A read-only view of an ONNX graph for inspection and surgery planning: decoded once with onnx-proto, with the
 * producer / consumer maps, the default-domain opset and the declared shapes (value_info, inputs, outputs).
 */

export type Dim = number | string;

export interface IoInfo {
  name: string;
  /** 'float32', 'int64', … or 'unknown'. */
  elemType: string;
  /** Declared shape: numbers for fixed dims, the dim_param (or '?') for symbolic ones; undefined when absent. */
  shape?: Dim[];
}

export interface GraphView {
  model: onnx.ModelProto;
  irVersion: number;
  /** Version of the default ('' / ai.onnx) operator set. */
  opset: number;
  producer: string;
  /** Graph inputs that are not initializers. */
  inputs: IoInfo[];
  outputs: IoInfo[];
  nodes: onnx.INodeProto[];
  initializers: Set<string>;
  /** Tensor name → index of the node producing it. */
  producerOf: Map<string, number>;
  /** Tensor name → indices of the nodes reading it. */
  consumersOf: Map<string, number[]>;
  /** Every tensor and node name in the graph (new names must avoid them). */
  names: Set<string>;
  /** Shapes declared in value_info / inputs / outputs. */
  declared: Map<string, IoInfo>;
  /** Files named by initializers stored as external data. */
  externalDataFiles: string[];
}

const ELEM_TYPES: Record<number, string> = {
  1: 'float32', 2: 'uint8', 3: 'int8', 4: 'uint16', 5: 'int16', 6: 'int32', 7: 'int64', 8: 'string', 9: 'bool',
  10: 'float16', 11: 'float64', 12: 'uint32', 13: 'uint64', 14: 'complex64', 15: 'complex128', 16: 'bfloat16',
};

/** int64 fields arrive as Long objects (or numbers): both become numbers. */
export function toNumber(v: unknown): number {
  if (typeof v === 'number') return v;
  if (v && typeof (v as { toNumber?: unknown }).toNumber === 'function') return (v as { toNumber(): number }).toNumber();
  return Number(v);
}

function ioInfo(v: onnx.IValueInfoProto): IoInfo {
  const tt = v.type?.tensorType;
  const dims = tt?.shape?.dim;
  return {
    name: v.name ?? '',
    elemType: tt?.elemType ? ELEM_TYPES[tt.elemType] ?? `type${tt.elemType}` : 'unknown',
    shape: dims ? dims.map((d) => (d.dimValue !== undefined && d.dimValue !== null && toNumber(d.dimValue) > 0 ? toNumber(d.dimValue) : d.dimParam || '?')) : undefined,
  };
}

/** Decodes and indexes a model. @throws MODEL_LOAD_FAILED */
export function viewGraph(bytes: Uint8Array): GraphView {
  let model: onnx.ModelProto;
  try {
    model = onnx.ModelProto.decode(bytes);
  } catch (err) {
    throw new WardenError('MODEL_LOAD_FAILED', `Not an ONNX model (${(err as Error).message}).`, { cause: err });
  }
  const g = model.graph;
  if (!g || !g.node) throw new WardenError('MODEL_LOAD_FAILED', 'Not an ONNX model (no graph).');
  const initializers = new Set((g.initializer ?? []).map((t) => t.name ?? ''));
  const nodes = g.node;
  const producerOf = new Map<string, number>();
  const consumersOf = new Map<string, number[]>();
  const names = new Set<string>(initializers);
  nodes.forEach((n, i) => {
    if (n.name) names.add(n.name);
    for (const o of n.output ?? []) {
      producerOf.set(o, i);
      names.add(o);
    }
    for (const inp of n.input ?? []) {
      if (!inp) continue;
      names.add(inp);
      const list = consumersOf.get(inp) ?? [];
      list.push(i);
      consumersOf.set(inp, list);
    }
  });
  const declared = new Map<string, IoInfo>();
  for (const v of [...(g.valueInfo ?? []), ...(g.input ?? []), ...(g.output ?? [])]) {
    const info = ioInfo(v);
    declared.set(info.name, info);
    names.add(info.name);
  }
  const opsetEntry = (model.opsetImport ?? []).find((o) => !o.domain || o.domain === 'ai.onnx');
  const externalDataFiles = new Set<string>();
  const tensors: onnx.ITensorProto[] = [...(g.initializer ?? [])];
  for (const n of nodes) for (const a of n.attribute ?? []) if (a.t) tensors.push(a.t);
  for (const t of tensors) {
    if (t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL || (t.externalData ?? []).length > 0) {
      externalDataFiles.add((t.externalData ?? []).find((e) => e.key === 'location')?.value ?? '(unnamed)');
    }
  }
  return {
    model,
    irVersion: toNumber(model.irVersion ?? 0),
    opset: opsetEntry ? toNumber(opsetEntry.version ?? 0) : 0,
    producer: [model.producerName, model.producerVersion].filter(Boolean).join(' '),
    inputs: (g.input ?? []).filter((v) => !initializers.has(v.name ?? '')).map(ioInfo),
    outputs: (g.output ?? []).map(ioInfo),
    nodes,
    initializers,
    producerOf,
    consumersOf,
    names,
    declared,
    externalDataFiles: [...externalDataFiles],
  };
}

/** The one image input Warden can feed, or a typed error saying why not. */
export interface ImageInput {
  name: string;
  channels: 1 | 3;
  height: number;
  width: number;
  /** Fixed batch size, or undefined when the batch dimension is symbolic. */
  fixedBatch?: number;
  /** The batch dimension's name when symbolic (kept for the new outputs' shapes). */
  batchParam?: string;
  /** The manifest's input.shape: [-1 | fixed batch, C, H, W]. */
  shape: [number, number, number, number];
}

/**
 * Checks the model has exactly one float32 NCHW input with 1 or 3 channels and a known height and width
 * (`size` supplies them when they are symbolic). @throws MODEL_UNSUPPORTED_LAYOUT, USAGE
 */
export function imageInputOf(view: GraphView, size?: [number, number]): ImageInput {
  const unsupported = (why: string): never => {
    throw new WardenError('MODEL_UNSUPPORTED_LAYOUT', `${why} Warden feeds one float32 tensor [N, C, H, W] with C = 1 (grey) or 3 (RGB).`);
  };
  if (view.inputs.length !== 1) {
    unsupported(`The model has ${view.inputs.length} inputs (${view.inputs.map((i) => i.name).join(', ') || 'none'}), not one.`);
  }
  const inp = view.inputs[0];
  if (inp.elemType !== 'float32') unsupported(`Input '${inp.name}' is ${inp.elemType}, not float32.`);
  const s = inp.shape;
  if (!s) unsupported(`Input '${inp.name}' declares no shape.`);
  const shape = s as Dim[];
  if (shape.length !== 4) unsupported(`Input '${inp.name}' has ${shape.length} dimensions [${shape.join(', ')}], not 4.`);
  const [n, c, h, w] = shape;
  if (c !== 1 && c !== 3) {
    if (w === 1 || w === 3) unsupported(`Input '${inp.name}' has shape [${shape.join(', ')}], which looks channels-last (NHWC).`);
    unsupported(`Input '${inp.name}' has shape [${shape.join(', ')}]: dimension 1 (channels) is ${c}.`);
  }
  let height = h;
  let width = w;
  if (typeof h !== 'number' || typeof w !== 'number') {
    if (!size) {
      throw new WardenError('USAGE', `Input '${inp.name}' has a symbolic height or width [${shape.join(', ')}]: give the size the model was trained at with --input-size HxW.`);
    }
    [height, width] = size;
  } else if (size && (size[0] !== h || size[1] !== w)) {
    throw new WardenError('USAGE', `--input-size ${size[0]}x${size[1]} contradicts the model's fixed input size ${h}x${w}.`);
  }
  const fixedBatch = typeof n === 'number' ? n : undefined;
  return {
    name: inp.name,
    channels: c as 1 | 3,
    height: height as number,
    width: width as number,
    fixedBatch,
    batchParam: typeof n === 'string' && n !== '?' ? n : undefined,
    shape: [fixedBatch ?? -1, c as number, height as number, width as number],
  };
}

/** @throws MODEL_EXTERNAL_DATA when initializers live in external files. */
export function refuseExternalData(view: GraphView): void {
  if (view.externalDataFiles.length === 0) return;
  throw new WardenError('MODEL_EXTERNAL_DATA',
    `The model keeps weights in external data files (${view.externalDataFiles.join(', ')}). A detector bundle is bound to the sha256 of the .onnx file alone, `
    + 'which would not cover those weights. Store them inside the model first, e.g. in Python: '
    + "onnx.save(onnx.load('model.onnx'), 'model-inline.onnx', save_as_external_data=False) (models under 2 GB), then expose that file.");
}
