import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import type pino from 'pino';
import { WardenError, type SerializedWardenError } from '../core/errors';
import { PROJECT_ROOT } from '../core/defaults';
import { cliLogger } from '../core/logger';
import type { MainToWorker, WorkerInit, WorkerToMain } from './protocol';

/**
 * A pool of worker threads, each holding one onnxruntime-node session. `session.run` blocks the thread it
 * runs on, so it never runs on the main thread.
 *
 * - Bounded queue: at most `maxQueue` tasks wait for a worker; the next one is refused with WORKER_OVERLOADED.
 * - Deadline per task (queue wait included): MODEL_TIMEOUT. A task already inside `session.run` cannot be
 *   interrupted; its late result is discarded and the worker takes the next task when it is done.
 * - Tensors are transferred, not copied, in both directions; errors cross as {code, message}.
 * - Execution providers: the configured list is tried; when session creation fails and the list names a
 *   GPU provider, a warning is logged and the session is created with ['cpu'] (onnxruntime-node does not
 *   fall back by itself). `provider` says which one is active.
 */

export interface InferencePoolOptions {
  modelPath: string;
  inputName: string;
  /** Output names to fetch, e.g. [logits, ...features]. */
  outputs: string[];
  /** Execution providers in order of preference. Default ['cpu']. */
  providers?: string[];
  /** Worker threads (sessions). Default 1. */
  workers?: number;
  /** ONNX Runtime intra-op threads per worker. Default max(1, floor(cpus / workers)). */
  threadsPerWorker?: number;
  /** Let ONNX Runtime's intra-op threads spin-wait between runs (lower latency on dedicated cores, a busy core
   * while idle). Default false. */
  spinWait?: boolean;
  /** Tasks allowed to wait for a free worker. Default 64. */
  maxQueue?: number;
  /** Per-task deadline in ms (queue wait included); 0 = none. Default 30000. */
  timeoutMs?: number;
  logger?: pino.Logger;
  /** Compiled worker script; default resolves dist/models/inference-worker.js. */
  workerScript?: string;
}

export interface InferenceResult {
  outputs: Record<string, Float32Array>;
  dims: Record<string, number[]>;
  /** Time inside `session.run` in the worker, ms. */
  runMs: number;
  /** Time from submission to result on the main thread, ms (queue + transfer + run). */
  totalMs: number;
}

export interface RunOptions {
  timeoutMs?: number;
  /** Transfer the input buffer to the worker (detaches it here). Default true; copied when it is a view. */
  transfer?: boolean;
}

interface Task {
  id: number;
  input: Float32Array;
  shape: number[];
  transfer: boolean;
  submitted: number;
  timer?: NodeJS.Timeout;
  settled: boolean;
  resolve: (r: InferenceResult) => void;
  reject: (e: WardenError) => void;
}

interface Slot {
  worker: Worker;
  busy?: Task;
  ready: boolean;
}

/** Locates the compiled worker: beside this file when running from dist, else <repo>/dist/models. */
export function resolveWorkerScript(): string {
  const sibling = path.join(__dirname, 'inference-worker.js');
  if (__filename.endsWith('.js') && fs.existsSync(sibling)) return sibling;
  return path.join(PROJECT_ROOT, 'dist', 'models', 'inference-worker.js');
}

export class InferencePool {
  readonly provider: string;
  readonly size: number;
  readonly threadsPerWorker: number;
  readonly maxQueue: number;
  readonly timeoutMs: number;

  #slots: Slot[] = [];
  #queue: Task[] = [];
  #nextId = 1;
  #closed = false;
  #init: WorkerInit;
  #script: string;
  #logger: pino.Logger;

  private constructor(init: WorkerInit, script: string, logger: pino.Logger, size: number, maxQueue: number, timeoutMs: number, provider: string) {
    this.#init = init;
    this.#script = script;
    this.#logger = logger;
    this.size = size;
    this.threadsPerWorker = init.intraOpThreads;
    this.maxQueue = maxQueue;
    this.timeoutMs = timeoutMs;
    this.provider = provider;
  }

  /** @throws MODEL_LOAD_FAILED, MODEL_MANIFEST_INVALID (names not in the graph) */
  static async create(opts: InferencePoolOptions): Promise<InferencePool> {
    const size = Math.max(1, Math.floor(opts.workers ?? 1));
    const threads = Math.max(1, Math.floor(opts.threadsPerWorker ?? Math.max(1, Math.floor(os.cpus().length / size))));
    const maxQueue = Math.max(0, Math.floor(opts.maxQueue ?? 64));
    const timeoutMs = Math.max(0, opts.timeoutMs ?? 30000);
    const logger = opts.logger ?? cliLogger();
    const script = opts.workerScript ?? resolveWorkerScript();
    if (!fs.existsSync(script)) {
      throw new WardenError('MODEL_LOAD_FAILED', `Inference worker script ${script} not found; build with \`npx tsc -p tsconfig.json\`.`);
    }
    const init: WorkerInit = {
      modelPath: path.resolve(opts.modelPath),
      providers: opts.providers && opts.providers.length ? opts.providers.map((p) => p.trim().toLowerCase()) : ['cpu'],
      intraOpThreads: threads,
      spinWait: opts.spinWait ?? false,
      outputs: opts.outputs,
      inputName: opts.inputName,
    };
    // The first worker settles the provider (and logs a fallback once); the rest start on that provider.
    const first = await startWorker(script, init);
    if (first.fallbackFrom) {
      logger.warn({ requested: first.fallbackFrom.providers, provider: 'cpu', err: first.fallbackFrom.message },
        `execution provider ${first.fallbackFrom.providers.join(',')} unavailable; falling back to cpu`);
    }
    const settled: WorkerInit = { ...init, providers: [first.provider] };
    let rest: Worker[] = [];
    try {
      rest = (await Promise.all(Array.from({ length: size - 1 }, () => startWorker(script, settled)))).map((s) => s.worker);
    } catch (err) {
      await first.worker.terminate();
      throw err;
    }
    const pool = new InferencePool(settled, script, logger, size, maxQueue, timeoutMs, first.provider);
    for (const w of [first.worker, ...rest]) pool.#attach(w);
    return pool;
  }

  /** Tasks waiting plus tasks running. */
  queueDepth(): number {
    return this.#queue.length + this.#slots.filter((s) => s.busy).length;
  }

  /** Runs one input. @throws WORKER_OVERLOADED, MODEL_TIMEOUT, MODEL_INFERENCE_FAILED */
  run(input: Float32Array, shape: number[], options: RunOptions = {}): Promise<InferenceResult> {
    if (this.#closed) return Promise.reject(new WardenError('MODEL_INFERENCE_FAILED', 'The inference pool is closed.'));
    const free = this.#slots.find((s) => s.ready && !s.busy);
    if (!free && this.#queue.length >= this.maxQueue) {
      return Promise.reject(new WardenError('WORKER_OVERLOADED',
        `The inference queue is full (${this.#queue.length} waiting, ${this.size} running).`, { detail: { maxQueue: this.maxQueue } }));
    }
    return new Promise<InferenceResult>((resolve, reject) => {
      const task: Task = {
        id: this.#nextId++, input, shape, transfer: options.transfer ?? true, submitted: performance.now(), settled: false, resolve, reject,
      };
      const timeoutMs = options.timeoutMs ?? this.timeoutMs;
      if (timeoutMs > 0) {
        task.timer = setTimeout(() => {
          const queuedAt = this.#queue.indexOf(task);
          if (queuedAt >= 0) this.#queue.splice(queuedAt, 1);
          this.#settle(task, undefined, new WardenError('MODEL_TIMEOUT',
            `Inference did not finish within ${timeoutMs} ms (${queuedAt >= 0 ? 'still queued' : 'running'}).`, { detail: { timeoutMs } }));
        }, timeoutMs);
      }
      if (free) this.#dispatch(free, task);
      else this.#queue.push(task);
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const err = new WardenError('MODEL_INFERENCE_FAILED', 'The inference pool was closed.');
    for (const t of this.#queue.splice(0)) this.#settle(t, undefined, err);
    for (const s of this.#slots) if (s.busy) this.#settle(s.busy, undefined, err);
    await Promise.all(this.#slots.map((s) => closeWorker(s.worker)));
    this.#slots = [];
  }

  #attach(worker: Worker): void {
    const slot: Slot = { worker, ready: true };
    this.#slots.push(slot);
    worker.on('message', (msg: WorkerToMain) => this.#onMessage(slot, msg));
    worker.on('error', (e) => this.#onDeath(slot, e));
    worker.on('exit', (code) => this.#onDeath(slot, new Error(`inference worker exited with code ${code}`)));
    this.#pump();
  }

  #onMessage(slot: Slot, msg: WorkerToMain): void {
    if (msg.type !== 'result' && msg.type !== 'error') return;
    const task = slot.busy;
    slot.busy = undefined;
    if (task && task.id === msg.id) {
      if (msg.type === 'result') {
        const outputs: Record<string, Float32Array> = {};
        const dims: Record<string, number[]> = {};
        for (const [k, v] of Object.entries(msg.outputs)) {
          outputs[k] = v.data;
          dims[k] = v.dims;
        }
        this.#settle(task, { outputs, dims, runMs: msg.runMs, totalMs: performance.now() - task.submitted });
      } else {
        this.#settle(task, undefined, WardenError.fromSerialized(msg.error as SerializedWardenError));
      }
    }
    this.#pump();
  }

  #onDeath(slot: Slot, error: Error): void {
    const i = this.#slots.indexOf(slot);
    if (i < 0) return;
    this.#slots.splice(i, 1);
    if (slot.busy) this.#settle(slot.busy, undefined, new WardenError('MODEL_INFERENCE_FAILED', `Inference worker died: ${error.message}`, { cause: error }));
    slot.busy = undefined;
    if (this.#closed) return;
    this.#logger.error({ err: error.message }, 'inference worker died; starting a replacement');
    void slot.worker.terminate();
    startWorker(this.#script, this.#init).then(
      (s) => (this.#closed ? void s.worker.terminate() : this.#attach(s.worker)),
      (e: unknown) => {
        this.#logger.error({ err: e instanceof Error ? e.message : String(e) }, 'could not replace the inference worker');
        if (this.#slots.length === 0) {
          const err = new WardenError('MODEL_INFERENCE_FAILED', 'No inference worker is available.');
          for (const t of this.#queue.splice(0)) this.#settle(t, undefined, err);
        }
      },
    );
  }

  #dispatch(slot: Slot, task: Task): void {
    slot.busy = task;
    let input = task.input;
    const owns = input.byteOffset === 0 && input.byteLength === input.buffer.byteLength
      // (realm-independent: not `instanceof`, which fails for buffers made in another vm context)
      && Object.prototype.toString.call(input.buffer) === '[object ArrayBuffer]';
    if (!task.transfer || !owns) input = new Float32Array(input);
    const msg: MainToWorker = { type: 'run', id: task.id, input, shape: task.shape };
    task.input = new Float32Array(0); // release our reference; the buffer now belongs to the worker
    slot.worker.postMessage(msg, [input.buffer as ArrayBuffer]);
  }

  #pump(): void {
    while (this.#queue.length) {
      const free = this.#slots.find((s) => s.ready && !s.busy);
      if (!free) return;
      const task = this.#queue.shift()!;
      this.#dispatch(free, task);
    }
  }

  #settle(task: Task, result?: InferenceResult, error?: WardenError): void {
    if (task.settled) return;
    task.settled = true;
    if (task.timer) clearTimeout(task.timer);
    if (error) task.reject(error);
    else task.resolve(result!);
  }
}

interface Started {
  worker: Worker;
  provider: string;
  fallbackFrom?: { providers: string[]; message: string };
}

function startWorker(script: string, init: WorkerInit): Promise<Started> {
  return new Promise<Started>((resolve, reject) => {
    const worker = new Worker(script, { workerData: init });
    const fail = (e: WardenError) => {
      cleanup();
      void worker.terminate();
      reject(e);
    };
    const onMessage = (msg: WorkerToMain) => {
      if (msg.type === 'ready') {
        cleanup();
        resolve({ worker, provider: msg.provider, fallbackFrom: msg.fallbackFrom });
      } else if (msg.type === 'init-error') {
        fail(WardenError.fromSerialized(msg.error));
      }
    };
    const onError = (e: Error) => fail(new WardenError('MODEL_LOAD_FAILED', `Inference worker failed to start: ${e.message}`, { cause: e }));
    const onExit = (code: number) => fail(new WardenError('MODEL_LOAD_FAILED', `Inference worker exited during start (code ${code}).`));
    const cleanup = () => {
      worker.off('message', onMessage);
      worker.off('error', onError);
      worker.off('exit', onExit);
    };
    worker.on('message', onMessage);
    worker.on('error', onError);
    worker.on('exit', onExit);
  });
}

/** How long a worker may take to finish its current run and release its session before it is terminated. */
const CLOSE_GRACE_MS = 15000;

/**
 * Ends a worker without terminating it mid-run: worker.terminate() during an onnxruntime-node run aborts the
 * process (measured: "terminate called after throwing an instance of 'Napi::Error'"). Terminates only after the grace.
 */
async function closeWorker(worker: Worker): Promise<void> {
  if (worker.threadId < 0) return; // already exited
  const exited = new Promise<boolean>((resolve) => worker.once('exit', () => resolve(true)));
  try {
    worker.postMessage({ type: 'close' } satisfies MainToWorker);
  } catch {
    // already gone
  }
  let timer: NodeJS.Timeout | undefined;
  const graceOver = new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(false), CLOSE_GRACE_MS); });
  const ended = await Promise.race([exited, graceOver]);
  clearTimeout(timer);
  if (!ended) await worker.terminate();
}
