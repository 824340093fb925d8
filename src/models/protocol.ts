import type { SerializedWardenError } from '../core/errors';

/** Messages across the inference worker boundary. Plain data only; tensors travel as transferred buffers. */

export interface WorkerInit {
  modelPath: string;
  providers: string[];
  intraOpThreads: number;
  /** Let ONNX Runtime's intra-op threads spin-wait between runs. */
  spinWait: boolean;
  /** Outputs to fetch (logits first, then feature names). */
  outputs: string[];
  inputName: string;
}

export type MainToWorker =
  | { type: 'run'; id: number; input: Float32Array; shape: number[] }
  /** Finish the run in progress, release the session, let the thread end. */
  | { type: 'close' };

export type WorkerToMain =
  | { type: 'ready'; provider: string; inputNames: string[]; outputNames: string[]; fallbackFrom?: { providers: string[]; message: string } }
  | { type: 'init-error'; error: SerializedWardenError }
  | { type: 'result'; id: number; outputs: Record<string, { data: Float32Array; dims: number[] }>; runMs: number }
  | { type: 'error'; id: number; error: SerializedWardenError };
