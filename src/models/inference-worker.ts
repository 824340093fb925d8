import { parentPort, workerData } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import * as ort from 'onnxruntime-node';
import type { MainToWorker, WorkerInit, WorkerToMain } from './protocol';
import type { ErrorCode, SerializedWardenError } from '../core/errors';

/**
 * Inference worker: one onnxruntime-node session per worker thread, created once at start. `session.run`
 * blocks the thread it runs on, which is why it lives here and not on the main thread.
 */

const init = workerData as WorkerInit;
const port = parentPort;
if (!port) throw new Error('inference-worker must run in a worker thread');

function post(msg: WorkerToMain, transfer: ArrayBuffer[] = []): void {
  port!.postMessage(msg, transfer);
}

function serialize(code: ErrorCode, message: string): SerializedWardenError {
  return { code, message };
}

const GPU = new Set(['cuda', 'tensorrt', 'webgpu', 'dml', 'coreml']);

async function createSession(): Promise<{ session: ort.InferenceSession; provider: string; fallbackFrom?: { providers: string[]; message: string } }> {
  const base: ort.InferenceSession.SessionOptions = {
    graphOptimizationLevel: 'all',
    intraOpNumThreads: init.intraOpThreads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    // Spinning is off unless asked for: measured here, an idle session burnt ~1 core for the whole gap between
    // requests, competing with decode, HTTP and the upstream; without it the median run was faster on a loaded
    // machine too (4.8 vs 7.4 ms, embedded model). docs/performance.md.
    extra: { session: { intra_op: { allow_spinning: init.spinWait ? '1' : '0' } } },
  };
  const providers = init.providers.length ? init.providers : ['cpu'];
  try {
    const session = await ort.InferenceSession.create(init.modelPath, { ...base, executionProviders: providers });
    // onnxruntime-node does not say which provider it ended on; with an explicit list it either honours the
    // first one or throws, so the first entry is the active provider.
    return { session, provider: providers[0] };
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    if (!providers.some((p) => GPU.has(p)) || (providers.length === 1 && providers[0] === 'cpu')) throw err;
    const session = await ort.InferenceSession.create(init.modelPath, { ...base, executionProviders: ['cpu'] });
    return { session, provider: 'cpu', fallbackFrom: { providers, message } };
  }
}

async function main(): Promise<void> {
  let session: ort.InferenceSession;
  try {
    const created = await createSession();
    session = created.session;
    const missing = [init.inputName, ...init.outputs].filter((n, i) => (i === 0 ? !session.inputNames.includes(n) : !session.outputNames.includes(n)));
    if (missing.length) {
      post({ type: 'init-error', error: serialize('MODEL_MANIFEST_INVALID',
        `The manifest names ${missing.join(', ')}, which the model graph does not have (inputs: ${session.inputNames.join(', ')}; outputs: ${session.outputNames.join(', ')}).`) });
      return;
    }
    post({ type: 'ready', provider: created.provider, inputNames: [...session.inputNames], outputNames: [...session.outputNames], fallbackFrom: created.fallbackFrom });
  } catch (err) {
    post({ type: 'init-error', error: serialize('MODEL_LOAD_FAILED', `Cannot create an inference session for ${init.modelPath}: ${err instanceof Error ? err.message : String(err)}`) });
    return;
  }

  const running = new Set<Promise<void>>();
  port!.on('message', (msg: MainToWorker) => {
    if (msg.type === 'close') {
      // Terminating a thread while onnxruntime-node is inside a run aborts the whole process (Napi::Error), so
      // the pool asks us to finish, release the session and end on our own.
      void (async () => {
        await Promise.allSettled([...running]);
        try { await session.release(); } catch { /* the thread ends either way */ }
        port!.close();
      })();
      return;
    }
    if (msg.type !== 'run') return;
    const run = (async () => {
      try {
        const feeds = { [init.inputName]: new ort.Tensor('float32', msg.input, msg.shape) };
        const t0 = performance.now();
        const results = await session.run(feeds, init.outputs);
        const runMs = performance.now() - t0;
        const outputs: Record<string, { data: Float32Array; dims: number[] }> = {};
        const transfer: ArrayBuffer[] = [];
        for (const name of init.outputs) {
          const t = results[name];
          if (!t || t.type !== 'float32') throw new Error(`output ${name} is ${t ? t.type : 'missing'}, expected float32`);
          // Copy into a buffer we own (outputs are small) so it can be transferred, not cloned.
          const data = new Float32Array(t.data as Float32Array);
          outputs[name] = { data, dims: [...t.dims] };
          transfer.push(data.buffer as ArrayBuffer);
        }
        post({ type: 'result', id: msg.id, outputs, runMs }, transfer);
      } catch (err) {
        post({ type: 'error', id: msg.id, error: serialize('MODEL_INFERENCE_FAILED', `Inference failed: ${err instanceof Error ? err.message : String(err)}`) });
      }
    })();
    running.add(run);
    void run.finally(() => running.delete(run));
  });
}

void main();
