import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { PROJECT_ROOT } from '../../core/defaults';
import { WardenError, isWardenError, type SerializedWardenError } from '../../core/errors';
import type { ImageInput } from './graph';

/**
 * The offline model commands run ONNX Runtime in a worker thread, like the gateway does (../pool.ts): `session.run`
 * blocks the thread it runs on, and the worker gives the sessions a realm of their own. Each task starts a worker,
 * runs, and ends it. Only plain data crosses: model bytes in; shapes or a comparison report out; typed errors as
 * {code, message, detail}.
 */

/** Pixel-space [0, 1] probe values are mapped to the model's input as the manifest says: (lo + u·(hi − lo) − mean[c]) / std[c]. */
export interface ProbeRange {
  scale: [number, number];
  mean: number[];
  std: number[];
}

export type ProbeTask =
  | { kind: 'shapes'; model: Uint8Array; input: ImageInput; tensors: string[]; chunk: number }
  | { kind: 'compare'; original: Uint8Array; exposed: Uint8Array; input: ImageInput; batches: number[]; seed: number; range: ProbeRange };

export interface ShapesResult {
  shapes: Record<string, number[]>;
}

export interface CompareResult {
  outputs: string[];
  newOutputShapes: Record<string, number[]>;
}

type WorkerReply = { ok: ShapesResult | CompareResult } | { error: SerializedWardenError };

/** Beside this file when running from dist, else <repo>/dist/models/onnx (ts-jest runs the sources). */
function workerScript(): string {
  const sibling = path.join(__dirname, 'probe-worker.js');
  if (__filename.endsWith('.js') && fs.existsSync(sibling)) return sibling;
  return path.join(PROJECT_ROOT, 'dist', 'models', 'onnx', 'probe-worker.js');
}

/** Runs one task in a fresh worker. @throws the task's typed error, or INTERNAL when the worker dies */
export function runInWorker(task: Extract<ProbeTask, { kind: 'shapes' }>): Promise<ShapesResult>;
export function runInWorker(task: Extract<ProbeTask, { kind: 'compare' }>): Promise<CompareResult>;
export function runInWorker(task: ProbeTask): Promise<ShapesResult | CompareResult> {
  const script = workerScript();
  if (!fs.existsSync(script)) {
    return Promise.reject(new WardenError('INTERNAL', `The probe worker ${script} is missing: run \`npm run build\`.`));
  }
  return new Promise((resolve, reject) => {
    const worker = new Worker(script, { workerData: task });
    let settled = false;
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      fn();
    };
    worker.once('message', (reply: WorkerReply) => settle(() => {
      if ('ok' in reply) resolve(reply.ok);
      else reject(WardenError.fromSerialized(reply.error));
    }));
    worker.once('error', (err) => settle(() => reject(isWardenError(err) ? err : new WardenError('INTERNAL', `The probe worker failed: ${err.message}`, { cause: err }))));
    worker.once('exit', (code) => settle(() => reject(new WardenError('INTERNAL', `The probe worker ended (exit ${code}) without an answer.`))));
  });
}
