import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { loadModelManifest, parseManifest, readOnnxMetadataProps } from '../../src/models/manifest';
import { buildTestModel, defaultManifest, writeTestModel } from '../fixtures/onnx/build-test-model';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-manifest-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

async function codeAndMessage(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await p;
  } catch (err) {
    return { code: (err as { code: string }).code, message: (err as Error).message };
  }
  throw new Error('expected a rejection');
}

describe('model manifest', () => {
  test('reads warden.manifest from metadata_props and hashes the file', async () => {
    const file = writeTestModel(dir, 'embedded.onnx');
    const loaded = await loadModelManifest(file);
    expect(loaded.manifestSource).toBe('metadata');
    expect(loaded.manifest.name).toBe('warden-test');
    expect(loaded.manifest.input).toEqual({ name: 'image', shape: [-1, 1, 224, 224], layout: 'NCHW' });
    expect(loaded.manifest.outputs.features).toEqual(['stage1_mean', 'penultimate']);
    expect(loaded.manifest.classes).toEqual(['normal', 'pneumonia']);
    expect(loaded.sha256).toBe(createHash('sha256').update(fs.readFileSync(file)).digest('hex'));
    expect(loaded.metadata['warden.test']).toMatch(/generated/);
  });

  test('the top-level protobuf walk finds metadata_props without decoding the graph', () => {
    const props = readOnnxMetadataProps(buildTestModel({ slowLayers: 2 }));
    expect(Object.keys(props).sort()).toEqual(['warden.manifest', 'warden.test']);
    expect(JSON.parse(props['warden.manifest']).name).toBe('warden-test-slow');
  });

  test('falls back to the <model>.onnx.json sidecar when metadata has no manifest', async () => {
    const file = writeTestModel(dir, 'vendor.onnx', { manifest: null });
    const sidecar = { ...defaultManifest(), name: 'vendor-model', version: '3.1' };
    fs.writeFileSync(`${file}.json`, JSON.stringify(sidecar));
    const loaded = await loadModelManifest(file);
    expect(loaded.manifestSource).toBe('sidecar');
    expect(loaded.manifest.name).toBe('vendor-model');
  });

  test('no manifest at all → MODEL_MANIFEST_INVALID', async () => {
    const file = writeTestModel(dir, 'bare.onnx', { manifest: null });
    const e = await codeAndMessage(loadModelManifest(file));
    expect(e.code).toBe('MODEL_MANIFEST_INVALID');
    expect(e.message).toMatch(/sidecar/);
  });

  test('an invalid embedded manifest names the bad field', async () => {
    const bad = defaultManifest();
    bad.preprocess.window = 'gamma';
    const file = writeTestModel(dir, 'badwindow.onnx', { manifest: bad });
    const e = await codeAndMessage(loadModelManifest(file));
    expect(e.code).toBe('MODEL_MANIFEST_INVALID');
    expect(e.message).toMatch(/preprocess\.window/);
  });

  test('invalid JSON in metadata → MODEL_MANIFEST_INVALID', async () => {
    const file = writeTestModel(dir, 'badjson.onnx', { rawManifest: '{"schema": 1,' });
    expect((await codeAndMessage(loadModelManifest(file))).code).toBe('MODEL_MANIFEST_INVALID');
  });

  test.each([
    ['input.shape.1', (m: any) => { m.input.shape = [-1, 2, 224, 224]; }],
    ['classes', (m: any) => { m.classes = []; }],
    ['outputs.penultimate', (m: any) => { m.outputs.penultimate = 'nowhere'; }],
    ['preprocess.std', (m: any) => { m.preprocess.std = [1, 1]; }],
    ['schema', (m: any) => { m.schema = 2; }],
    ['outputs.logits', (m: any) => { delete m.outputs.logits; }],
  ])('field %s is checked', (field, mutate) => {
    const m = defaultManifest();
    mutate(m);
    let err: any;
    try {
      parseManifest(m);
    } catch (e) {
      err = e;
    }
    expect(err?.code).toBe('MODEL_MANIFEST_INVALID');
    expect(err.message).toContain(`field ${field}`);
  });

  test('not an ONNX file → MODEL_LOAD_FAILED', async () => {
    const file = path.join(dir, 'text.onnx');
    fs.writeFileSync(file, 'this is not a protobuf message at all\n');
    expect((await codeAndMessage(loadModelManifest(file))).code).toBe('MODEL_LOAD_FAILED');
  });
});
