/** Bring your own model: inspect, graph surgery, bit-identity proof and the typed refusals (src/models/onnx). */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { onnx } from 'onnx-proto';
import { exposeModel, inspectModel, proveOriginalOutputsUnchanged } from '../../src/models/onnx';
import { imageInputOf, viewGraph } from '../../src/models/onnx/graph';
import { probeImage } from '../../src/models/onnx/verify';
import { messageFields, spliceModel } from '../../src/models/onnx/wire';
import { parseManifestJson, readOnnxMetadataProps } from '../../src/models/manifest';
import { DEFAULT_MODEL_PATH } from '../../src/core/defaults';
import { InferencePool } from '../../src/models/pool';
import { buildSealedModel, buildTestModel } from '../fixtures/onnx/build-test-model';

const PRE = { window: 'auto' as const, invertMonochrome1: true, resize: 'bilinear' as const, scale: [0, 1] as [number, number], mean: [0], std: [1] };
const expose = (bytes: Uint8Array, extra: Partial<Parameters<typeof exposeModel>[1]> = {}) =>
  exposeModel(bytes, { classes: ['normal', 'pneumonia'], preprocess: PRE, name: 'vendor', ...extra });

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-byo-unit-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
let files = 0;

/** The gateway's own inference pool (worker thread, its session options) on model bytes. */
async function poolFor(bytes: Uint8Array, inputName: string, outputs: string[]): Promise<InferencePool> {
  const file = path.join(tmp, `m${files++}.onnx`);
  fs.writeFileSync(file, bytes);
  return InferencePool.create({ modelPath: file, inputName, outputs, workers: 1, threadsPerWorker: 1, timeoutMs: 0 });
}

/**
 * An independent check of the proof (it does not trust exposeModel's own): both models in the gateway's inference
 * pool, `n` seeded inputs of `batch` images each; returns how many inputs gave byte-identical original outputs.
 */
async function identicalRuns(original: Uint8Array, exposed: Uint8Array, outputs: string[], n: number, shape: [number, number, number, number], seed = 99): Promise<number> {
  const a = await poolFor(original, 'input', outputs);
  const b = await poolFor(exposed, 'input', outputs);
  const [batch, c, h, w] = shape;
  let same = 0;
  try {
    for (let k = 0; k < n; k++) {
      const data = new Float32Array(batch * c * h * w);
      for (let j = 0; j < batch; j++) data.set(probeImage(k * batch + j, seed, c, h, w), j * c * h * w);
      const ra = await a.run(data.slice(), shape);
      const rb = await b.run(data.slice(), shape);
      if (outputs.every((o) => Buffer.from(ra.outputs[o].buffer).equals(Buffer.from(rb.outputs[o].buffer)))) same++;
    }
  } finally {
    await a.close();
    await b.close();
  }
  return same;
}

describe('warden model inspect', () => {
  test('a sealed CNN: one NCHW input, the logits output, the penultimate behind the last Gemm, one tap per resolution', async () => {
    const ins = await inspectModel(buildSealedModel());
    expect(ins.input).toMatchObject({ name: 'input', channels: 1, height: 224, width: 224, shape: [-1, 1, 224, 224], batchParam: 'batch' });
    expect(ins.logits).toEqual({ output: 'scores', tensor: 'scores', classes: 2, softmax: false });
    expect(ins.penultimate).toMatchObject({ tensor: 'head/hidden', shape: [1, 16], pool: false });
    expect(ins.groups.map((g) => g.resolution)).toEqual(['112x112', '56x56', '28x28', '14x14']);
    // the stage outputs, post-activation: the Relu after the residual Add, not the Add
    expect(ins.suggestedTaps).toEqual(['block1/relu', 'block2/relu', 'block3/out', 'block4/relu']);
    expect(ins.candidates.find((c) => c.name === 'block3/add')!.preferred).toBe(false);
  });

  test('the reference model: taps are its four stage outputs plus the stem, never the side branch (residual statistics)', async () => {
    const ins = await inspectModel(fs.readFileSync(DEFAULT_MODEL_PATH));
    expect(ins.logits?.output).toBe('logits');
    expect(ins.suggestedTaps).toEqual([
      '/m/stem/stem.2/Relu_output_0', '/m/stages.0/stages.0.1/Relu_1_output_0', '/m/stages.1/stages.1.1/Relu_1_output_0',
      '/m/stages.2/stages.2.1/Relu_1_output_0', '/m/stages.3/stages.3.1/Relu_1_output_0',
    ]);
    expect(ins.groups.map((g) => g.resolution)).toContain('222x222'); // listed, but not suggested
  });

  test('a model ending in Softmax: its input is read as the logits', async () => {
    const ins = await inspectModel(buildSealedModel({ softmax: true }));
    expect(ins.logits).toEqual({ output: 'scores', tensor: 'head/logits', classes: 2, softmax: true });
    expect(ins.penultimate?.tensor).toBe('head/hidden');
  });
});

describe('warden model expose', () => {
  const variants: [string, Parameters<typeof buildSealedModel>[0], [number, number, number, number]][] = [
    ['1 channel, dynamic batch', {}, [1, 1, 224, 224]],
    ['3 channels, fixed batch 2', { channels: 3, batch: 2, size: 96 }, [2, 3, 96, 96]],
    ['softmax output, opset 18', { softmax: true, opset: 18 }, [1, 1, 224, 224]],
  ];
  test.each(variants)('%s: original outputs bit-identical on ≥ 20 probe inputs (the proof and an independent re-run)', async (_name, opts, shape) => {
    const sealed = buildSealedModel(opts);
    const res = await expose(sealed);
    expect(res.proof.identical).toBe(true);
    expect(res.proof.images).toBeGreaterThanOrEqual(20);
    expect(res.proof.outputs).toEqual(['scores']);
    expect(await identicalRuns(sealed, res.bytes, ['scores'], 20, shape)).toBe(20);
    const manifest = parseManifestJson(readOnnxMetadataProps(res.bytes)['warden.manifest']);
    expect(manifest.input.shape).toEqual(opts?.batch ? [2, shape[1], shape[2], shape[3]] : [-1, shape[1], shape[2], shape[3]]);
    expect(manifest.outputs.logits).toBe(opts?.softmax ? 'logits' : 'scores');
    expect(manifest.outputs.penultimate).toBe('penultimate');
    expect(manifest.outputs.features).toHaveLength(2 * 4 + 1);
    for (const f of manifest.outputs.features) expect(res.proof.newOutputShapes[f]).toHaveLength(2);
  });

  test('every original node, initializer, input, output and metadata entry is kept byte for byte; new ones come after', async () => {
    const sealed = buildSealedModel();
    const res = await expose(sealed);
    const before = onnx.ModelProto.decode(sealed);
    const after = onnx.ModelProto.decode(res.bytes);
    const enc = (xs: { constructor: { encode(m: unknown): { finish(): Uint8Array } } }[]) => xs.map((x) => Buffer.from(x.constructor.encode(x).finish()).toString('hex'));
    const g0 = before.graph as onnx.GraphProto;
    const g1 = after.graph as onnx.GraphProto;
    expect(enc(g1.node.slice(0, g0.node.length) as never)).toEqual(enc(g0.node as never));
    expect(enc(g1.initializer.slice(0, g0.initializer.length) as never)).toEqual(enc(g0.initializer as never));
    expect(enc(g1.input as never)).toEqual(enc(g0.input as never));
    expect(enc(g1.output.slice(0, g0.output.length) as never)).toEqual(enc(g0.output as never));
    expect(g1.node.length).toBeGreaterThan(g0.node.length);
    expect(g1.output.map((o) => o.name)).toEqual(['scores', 'block1_relu_mean', 'block1_relu_std', 'block2_relu_mean', 'block2_relu_std',
      'block3_out_mean', 'block3_out_std', 'block4_relu_mean', 'block4_relu_std', 'penultimate']);
    // the original graph's bytes are a prefix of the new graph message
    const graphOf = (b: Uint8Array) => { const f = messageFields(b).find((x) => x.field === 7)!; return Buffer.from(b.subarray(f.dataStart, f.end)); };
    expect(graphOf(res.bytes).subarray(0, graphOf(sealed).length).equals(graphOf(sealed))).toBe(true);
    expect(res.sha256).not.toBe(res.originalSha256);
  });

  test('the exposed statistics are what the reference model computes for its own stages (to 1e-5 relative)', async () => {
    const ref = fs.readFileSync(DEFAULT_MODEL_PATH);
    const stages = ['/m/stages.0/stages.0.1/Relu_1_output_0', '/m/stages.1/stages.1.1/Relu_1_output_0', '/m/stages.2/stages.2.1/Relu_1_output_0', '/m/stages.3/stages.3.1/Relu_1_output_0'];
    const res = await expose(ref, { taps: stages });
    const names = ['stages_0_1_relu_1', 'stages_1_1_relu_1', 'stages_2_1_relu_1', 'stages_3_1_relu_1'];
    const theirNames = [1, 2, 3, 4].flatMap((i) => [`stage${i}_mean`, `stage${i}_std`]);
    const pool = await poolFor(res.bytes, 'image', [...theirNames, ...names.flatMap((n) => [`${n}_mean`, `${n}_std`])]);
    const out = (await pool.run(probeImage(1, 5, 1, 224, 224), [1, 1, 224, 224])).outputs;
    await pool.close();
    names.forEach((n, i) => {
      for (const stat of ['mean', 'std']) {
        const theirs = out[`stage${i + 1}_${stat}`];
        out[`${n}_${stat}`].forEach((v, k) => expect(Math.abs(v - theirs[k])).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(theirs[k]))));
      }
    });
    // the reference model already has an output called penultimate: the new one gets another name
    expect(res.manifest.outputs.penultimate).toBe('penultimate_2');
  });

  test('an older warden.manifest in metadata_props is replaced, other metadata kept', async () => {
    const withManifest = buildTestModel();
    const res = await expose(withManifest, { taps: ['r1', 'r2'] });
    const meta = readOnnxMetadataProps(res.bytes);
    expect(meta['warden.test']).toBeDefined();
    expect(JSON.parse(meta['warden.manifest']).name).toBe('vendor');
    expect(messageFields(res.bytes).filter((f) => f.field === 14)).toHaveLength(2);
  });
});

describe('typed refusals', () => {
  test('channels-last (NHWC) input: MODEL_UNSUPPORTED_LAYOUT naming the layout', async () => {
    await expect(inspectModel(buildSealedModel({ layout: 'NHWC' }))).rejects.toMatchObject({ code: 'MODEL_UNSUPPORTED_LAYOUT', message: expect.stringMatching(/NHWC/) });
  });
  test('two inputs: MODEL_UNSUPPORTED_LAYOUT', async () => {
    await expect(expose(buildSealedModel({ extraInput: true }))).rejects.toMatchObject({ code: 'MODEL_UNSUPPORTED_LAYOUT', message: expect.stringMatching(/2 inputs/) });
  });
  test('a 3-D input: MODEL_UNSUPPORTED_LAYOUT', () => {
    const m = onnx.ModelProto.decode(buildSealedModel());
    (m.graph as onnx.GraphProto).input[0].type!.tensorType!.shape!.dim!.splice(1, 1);
    expect(() => imageInputOf(viewGraph(onnx.ModelProto.encode(m).finish()))).toThrow(expect.objectContaining({ code: 'MODEL_UNSUPPORTED_LAYOUT' }));
  });
  test('a symbolic height and width need --input-size (USAGE naming the flag)', () => {
    const m = onnx.ModelProto.decode(buildSealedModel());
    for (const d of (m.graph as onnx.GraphProto).input[0].type!.tensorType!.shape!.dim!.slice(2)) { d.dimValue = null as never; d.dimParam = 'side'; }
    const view = viewGraph(onnx.ModelProto.encode(m).finish());
    expect(() => imageInputOf(view)).toThrow(expect.objectContaining({ code: 'USAGE', message: expect.stringMatching(/--input-size/) }));
    expect(imageInputOf(view, [224, 224]).shape).toEqual([-1, 1, 224, 224]);
  });
  test('weights in external data files: MODEL_EXTERNAL_DATA naming the file', async () => {
    const m = onnx.ModelProto.decode(buildSealedModel());
    const w = (m.graph as onnx.GraphProto).initializer[0];
    w.rawData = new Uint8Array(0);
    w.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
    w.externalData = [{ key: 'location', value: 'weights.bin' }, { key: 'offset', value: '0' }];
    await expect(expose(onnx.ModelProto.encode(m).finish())).rejects.toMatchObject({ code: 'MODEL_EXTERNAL_DATA', message: expect.stringMatching(/weights\.bin/) });
  });
  test('the proof fails with MODEL_SURGERY_CHANGED_OUTPUTS when an original output differs (two different models)', async () => {
    const a = buildSealedModel({ seed: 11 });
    const b = buildSealedModel({ seed: 12 });
    const input = imageInputOf(viewGraph(a));
    await expect(proveOriginalOutputsUnchanged(a, b, input, { probes: 20 })).rejects.toMatchObject({ code: 'MODEL_SURGERY_CHANGED_OUTPUTS', detail: { output: 'scores', run: 1 } });
  });
  test('tapping raw Conv outputs of the reference model changes its logits in ONNX Runtime (fusions): refused, nothing returned', async () => {
    // Measured with onnxruntime-node 1.30 (CPU): a Conv output with a second consumer is no longer fused with what
    // follows it, and the logits move by ~1e-8. This is the case the proof exists for.
    const ref = fs.readFileSync(DEFAULT_MODEL_PATH);
    const ins = await inspectModel(ref);
    const convs = ins.candidates.filter((c) => c.op === 'Conv' && c.shape?.length === 4).map((c) => c.name);
    await expect(expose(ref, { taps: convs, inspection: ins })).rejects.toMatchObject({ code: 'MODEL_SURGERY_CHANGED_OUTPUTS' });
  });
  test('--classes must match the number of logits (USAGE)', async () => {
    await expect(expose(buildSealedModel(), { classes: ['a', 'b', 'c'] })).rejects.toMatchObject({ code: 'USAGE', message: expect.stringMatching(/3 classes.*2 values/) });
  });
  test('spliceModel keeps unknown top-level fields in order', () => {
    const sealed = buildSealedModel();
    const unknown = Buffer.from([0xf8, 0x06, 0x2a]); // field 111, varint 42: not an ONNX field
    const withUnknown = Buffer.concat([Buffer.from(sealed), unknown]);
    const out = spliceModel(withUnknown, { graphAppend: new Uint8Array(0), dropMetadataKeys: [], metadata: [] });
    expect(Buffer.from(out).equals(withUnknown)).toBe(true);
  });
});
