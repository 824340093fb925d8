import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { WardenError } from '../../src/core/errors';
import { InferencePool, resolveWorkerScript } from '../../src/models/pool';
import { writeTestModel } from '../fixtures/onnx/build-test-model';

// The worker runs compiled code: the test command builds (tsc) before jest.
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-pool-'));
const fast = writeTestModel(dir, 'fast.onnx');
const slow = writeTestModel(dir, 'slow.onnx', { slowLayers: 20 });
const OUTPUTS = ['logits', 'stage1_mean', 'penultimate'];
const pools: InferencePool[] = [];
afterAll(async () => {
  await Promise.all(pools.map((p) => p.close()));
  fs.rmSync(dir, { recursive: true, force: true });
});

function captureLogger(): { logger: pino.Logger; lines: () => Record<string, unknown>[] } {
  const chunks: string[] = [];
  const stream = new Writable({ write(chunk, _enc, cb) { chunks.push(String(chunk)); cb(); } });
  return { logger: pino({ level: 'warn' }, stream), lines: () => chunks.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l)) };
}

async function pool(opts: Partial<Parameters<typeof InferencePool.create>[0]> & { modelPath: string }): Promise<InferencePool> {
  const p = await InferencePool.create({ inputName: 'image', outputs: OUTPUTS, threadsPerWorker: 1, logger: captureLogger().logger, ...opts });
  pools.push(p);
  return p;
}

const image = (v = 0.5) => new Float32Array(224 * 224).fill(v);
const SHAPE = [1, 1, 224, 224];

async function rejection(p: Promise<unknown>): Promise<WardenError> {
  try {
    await p;
  } catch (err) {
    return err as WardenError;
  }
  throw new Error('expected a rejection');
}

test('the worker script is found', () => {
  expect(fs.existsSync(resolveWorkerScript())).toBe(true);
});

test('returns logits and every feature output; the input buffer is transferred, not copied', async () => {
  const p = await pool({ modelPath: fast });
  expect(p.provider).toBe('cpu');
  const input = image();
  const res = await p.run(input, SHAPE);
  expect(input.buffer.byteLength).toBe(0); // detached: it moved to the worker
  expect(Object.prototype.toString.call(res.outputs.logits)).toBe('[object Float32Array]'); // (worker realm)
  expect(res.outputs.logits.length).toBe(2);
  expect(res.outputs.stage1_mean.length).toBe(8);
  expect(res.outputs.penultimate.length).toBe(16);
  expect(res.dims.penultimate).toEqual([1, 16]);
  expect(res.runMs).toBeGreaterThan(0);
  // deterministic: same input, same output
  const again = await p.run(image(), SHAPE);
  expect(Array.from(again.outputs.logits)).toEqual(Array.from(res.outputs.logits));
  // a view into a larger buffer is copied (the caller's buffer is left alone)
  const big = new Float32Array(224 * 224 + 8).fill(0.5);
  await p.run(big.subarray(8), SHAPE);
  expect(big.length).toBe(224 * 224 + 8);
});

test('the main event loop keeps ticking while a long inference runs in the worker', async () => {
  const p = await pool({ modelPath: slow });
  let ticks = 0;
  const timer = setInterval(() => { ticks += 1; }, 10);
  const t0 = Date.now();
  let runMs = 0;
  for (let i = 0; i < 3; i++) runMs += (await p.run(image(), SHAPE)).runMs;
  clearInterval(timer);
  const wall = Date.now() - t0;
  // 3 slow inferences take hundreds of ms; had session.run blocked this thread, ticks would be ~0.
  expect(runMs).toBeGreaterThan(150);
  expect(ticks).toBeGreaterThanOrEqual(Math.min(10, Math.floor(wall / 40)));
  expect(ticks).toBeGreaterThanOrEqual(5);
});

test("a GPU provider that cannot load ('cuda' is not bundled) falls back to cpu with a warning", async () => {
  const cap = captureLogger();
  const p = await pool({ modelPath: fast, providers: ['cuda', 'cpu'], workers: 2, logger: cap.logger });
  expect(p.provider).toBe('cpu');
  const warnings = cap.lines().filter((l) => l.level === 40);
  expect(warnings.length).toBe(1);
  expect(String(warnings[0].msg)).toMatch(/cuda.*falling back to cpu/);
  expect((await p.run(image(), SHAPE)).outputs.logits.length).toBe(2);
});

test('a cpu-only provider list that fails is not retried: MODEL_LOAD_FAILED', async () => {
  const bad = path.join(dir, 'garbage.onnx');
  fs.writeFileSync(bad, 'not a model');
  const err = await rejection(InferencePool.create({ modelPath: bad, inputName: 'image', outputs: OUTPUTS, logger: captureLogger().logger }));
  expect(err.code).toBe('MODEL_LOAD_FAILED');
});

test('a full queue refuses with WORKER_OVERLOADED', async () => {
  const p = await pool({ modelPath: slow, workers: 1, maxQueue: 1 });
  const running = p.run(image(), SHAPE);
  const queued = p.run(image(), SHAPE);
  expect(p.queueDepth()).toBe(2);
  const err = await rejection(p.run(image(), SHAPE));
  expect(err).toBeInstanceOf(WardenError);
  expect(err.code).toBe('WORKER_OVERLOADED');
  await expect(running).resolves.toBeDefined();
  await expect(queued).resolves.toBeDefined();
  expect(p.queueDepth()).toBe(0);
});

test('a task past its deadline rejects with MODEL_TIMEOUT; the pool keeps working', async () => {
  const p = await pool({ modelPath: slow, workers: 1, timeoutMs: 30 });
  const running = p.run(image(), SHAPE);
  const queued = p.run(image(), SHAPE);
  expect((await rejection(running)).code).toBe('MODEL_TIMEOUT');
  const qErr = await rejection(queued);
  expect(qErr.code).toBe('MODEL_TIMEOUT');
  expect(qErr.message).toMatch(/queued|running/);
  const ok = await p.run(image(), SHAPE, { timeoutMs: 60000 });
  expect(ok.outputs.logits.length).toBe(2);
});

test('worker errors cross the boundary as typed errors', async () => {
  const p = await pool({ modelPath: fast });
  const err = await rejection(p.run(new Float32Array(10), [1, 1, 2, 5]));
  expect(err).toBeInstanceOf(WardenError);
  expect(err.code).toBe('MODEL_INFERENCE_FAILED');
});

test('manifest names missing from the graph → MODEL_MANIFEST_INVALID at start', async () => {
  const err = await rejection(InferencePool.create({ modelPath: fast, inputName: 'image', outputs: ['logits', 'nope'], logger: captureLogger().logger }));
  expect(err.code).toBe('MODEL_MANIFEST_INVALID');
  expect(err.message).toMatch(/nope/);
});

test('closing a pool during a slow inference lets the run finish instead of aborting the process', async () => {
  // Before the graceful close, worker.terminate() mid-run aborted the whole process (Napi::Error).
  const p = await InferencePool.create({ modelPath: slow, inputName: 'image', outputs: OUTPUTS, threadsPerWorker: 1, logger: captureLogger().logger });
  const inflight = p.run(image(), SHAPE).then(() => 'resolved', (e: WardenError) => e.code);
  await new Promise((r) => setTimeout(r, 20));
  await p.close();
  expect(await inflight).toBe('MODEL_INFERENCE_FAILED');
  expect(p.queueDepth()).toBe(0);
});
