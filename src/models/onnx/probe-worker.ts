import { parentPort, workerData } from 'node:worker_threads';
import { onnx } from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { WardenError, toWardenError } from '../../core/errors';
import { mulberry32 } from '../../core/random';
import type { CompareResult, ProbeTask, ShapesResult } from './runtime';
import { changedOutputError, difference, probeBatch } from './verify';
import { spliceModel } from './wire';

/**
 * Worker entry of the model commands (see runtime.ts): 'shapes' runs copies of a model that list candidate tensors as
 * outputs, a bounded chunk at a time; 'compare' runs the original and the exposed model on the same probe batches
 * and compares every original output byte for byte.
 */

/** The inference worker's options, with one intra-op thread so that two sessions compute alike. */
const SESSION_OPTIONS: ort.InferenceSession.SessionOptions = {
  graphOptimizationLevel: 'all',
  intraOpNumThreads: 1,
  interOpNumThreads: 1,
  executionMode: 'sequential',
  executionProviders: ['cpu'],
};

async function open(bytes: Uint8Array, what: string): Promise<ort.InferenceSession> {
  try {
    return await ort.InferenceSession.create(bytes, SESSION_OPTIONS);
  } catch (err) {
    throw new WardenError('MODEL_LOAD_FAILED', `ONNX Runtime cannot load ${what}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}

async function run(session: ort.InferenceSession, inputName: string, data: Float32Array, dims: number[], fetches?: string[]): Promise<ort.InferenceSession.ReturnType> {
  try {
    const feeds = { [inputName]: new ort.Tensor('float32', data, dims) };
    return fetches ? await session.run(feeds, fetches) : await session.run(feeds);
  } catch (err) {
    throw new WardenError('MODEL_INFERENCE_FAILED', `Inference failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}

async function shapes(task: Extract<ProbeTask, { kind: 'shapes' }>): Promise<ShapesResult> {
  const { input } = task;
  const batch = input.fixedBatch ?? 1;
  const n = batch * input.channels * input.height * input.width;
  const rnd = mulberry32(16);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = rnd();
  const dims = [batch, input.channels, input.height, input.width];
  const declared = new Set(onnx.ModelProto.decode(task.model).graph?.output?.map((o) => o.name ?? '') ?? []);
  const out: Record<string, number[]> = {};
  for (let k = 0; k < task.tensors.length; k += task.chunk) {
    const chunk = task.tensors.slice(k, k + task.chunk);
    const extra = chunk.filter((t) => !declared.has(t));
    const graphAppend = onnx.GraphProto.encode({ output: extra.map((name) => ({ name })) } as onnx.IGraphProto).finish();
    const probe = extra.length ? spliceModel(task.model, { graphAppend, dropMetadataKeys: [], metadata: [] }) : task.model;
    const session = await open(probe, 'the model (probe copy)');
    try {
      const res = await run(session, input.name, data, dims, chunk);
      for (const t of chunk) if (res[t]) out[t] = [...res[t].dims];
    } finally {
      await session.release();
    }
  }
  return { shapes: out };
}

async function compare(task: Extract<ProbeTask, { kind: 'compare' }>): Promise<CompareResult> {
  const { input } = task;
  const a = await open(task.original, 'the original model');
  const b = await open(task.exposed, 'the exposed model');
  try {
    const outputs = [...a.outputNames];
    const missing = outputs.filter((o) => !b.outputNames.includes(o));
    if (missing.length) throw new WardenError('MODEL_SURGERY_CHANGED_OUTPUTS', `The exposed model lost the original output(s) ${missing.join(', ')}.`);
    const added = b.outputNames.filter((o) => !outputs.includes(o));
    let next = 0;
    let newOutputShapes: Record<string, number[]> = {};
    for (let r = 0; r < task.batches.length; r++) {
      const n = task.batches[r];
      const data = probeBatch(next, n, task.seed, input, task.range);
      next += n;
      const dims = [n, input.channels, input.height, input.width];
      const ra = await run(a, input.name, data, dims);
      const rb = await run(b, input.name, data.slice(), dims);
      for (const o of outputs) {
        const why = difference(ra[o], rb[o]);
        if (why) throw changedOutputError(o, r + 1, task.batches.length, n, why);
      }
      newOutputShapes = Object.fromEntries(added.map((o) => [o, [...rb[o].dims]]));
    }
    return { outputs, newOutputShapes };
  } finally {
    await a.release();
    await b.release();
  }
}

const task = workerData as ProbeTask;
(task.kind === 'shapes' ? shapes(task) : compare(task)).then(
  (ok) => parentPort!.postMessage({ ok }),
  (err) => parentPort!.postMessage({ error: toWardenError(err, 'INTERNAL', `The probe worker failed: ${err instanceof Error ? err.message : String(err)}`).toJSON() }),
);
