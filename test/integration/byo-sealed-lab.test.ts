/**
 * Bring your own model, on the lab's sealed VGG-style classifier (test/fixtures/byo/sealed-vgg.onnx: logits only, no
 * manifest, input normalised outside the graph; lab/sealed_model.py): inspect → expose → fit on clean DICOMs →
 * scan and serve, and the white-box PGD-L∞ ε = 8/255 attacks the lab made on THIS model (test/fixtures/byo/adversarial)
 * are blocked while the clean lab fixtures are not. Default detectors, default policy (decideBy uad, block at
 * p ≤ 0.005, flag at p ≤ 0.05).
 *
 * Clean data for fit: 600 detector_fit + 600 calibration images of the Kermany train split (lab/splits.csv), written as
 * DICOM here from ../shared/datasets (pixels identical to the lab's DICOMs, checked below) in four transfer syntaxes.
 * Blocking at p ≤ 0.005 needs ≥ 398 calibration instances (UAD keeps half for its layers); 600 leaves a margin.
 * Held-out clean: the 36 clean test-split fixtures of test/fixtures/lab (never in fit).
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readLabManifest } from '../helpers/lab-fixtures';
import { freePort, orthancAvailable, startOrthanc, type OrthancHandle } from '../helpers/orthanc';
import { startGatewayProcess, type GatewayProcess } from '../helpers/gateway-process';
import { orthancInstanceId } from '../helpers/orthanc-client';
import { failedItems, referencedUids, stow } from '../helpers/stow';
import { SYNTAX, kermanyGrey, splitPaths, writeKermanyStudies } from '../helpers/write-dicom';
import { decodeInstance, isSkipped } from '../../src/dicom';
import { InferencePool } from '../../src/models/pool';
import { loadModelManifest } from '../../src/models/manifest';
import { probeImage } from '../../src/models/onnx/verify';
import { readHeader } from '../../src/dicom';
import { FAILURE_REASONS } from '../../src/proxy/failure-reasons';

jest.setTimeout(600000);
const ROOT = path.resolve(__dirname, '..', '..');
const BYO = path.join(ROOT, 'test', 'fixtures', 'byo');
const SEALED = path.join(BYO, 'sealed-vgg.onnx');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-byo-sealed-'));
const EXPOSED = path.join(dir, 'sealed-vgg.warden.onnx');
const BUNDLE = path.join(dir, 'sealed.bundle');
const N_TRAIN = 600;
const N_CAL = 600;
/**
 * Measured with this setup (docs/byo-model.md): all 10 attacks flagged or blocked; 5 blocked (UAD p = 1/301, the
 * floor of 300 calibration scores), the other 5 (normal → pneumonia) at UAD p = 2/301 = 0.0066, just above the block
 * threshold because one clean calibration image scores higher; 0 of 36 held-out clean fixtures flagged or blocked.
 * Asserted with a margin: every attack at least flagged, at least 4 blocked, no clean fixture blocked.
 */
const MIN_BLOCKED = 4;

function warden(...args: string[]) {
  const res = spawnSync(process.execPath, [path.join(ROOT, 'bin', 'warden.js'), ...args], { cwd: dir, encoding: 'utf8', timeout: 300000, env: { ...process.env, WARDEN_LOG_LEVEL: 'error' } });
  return { code: res.status, stdout: res.stdout, stderr: res.stderr };
}

const attacks = readLabManifest(path.join(BYO, 'manifest.csv'));
const cleanHeldOut = readLabManifest().filter((r) => r.kind === 'clean' && (r as unknown as { split: string }).split === 'test');
let orthanc: OrthancHandle | undefined;
let gateway: GatewayProcess | undefined;

afterAll(async () => {
  await gateway?.stop();
  await orthanc?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('the lab\'s sealed VGG (second architecture), brought as a vendor would', () => {
  test('the fixtures: a logits-only model without a manifest, 10 successful PGD-L∞ 8/255 DICOMs made on it', () => {
    expect(fs.statSync(SEALED).size).toBeLessThan(5 * 1024 * 1024);
    expect(attacks).toHaveLength(10);
    for (const a of attacks) expect(a).toMatchObject({ kind: 'adversarial', attack: 'pgd_linf', eps: '8', success: '1' });
    expect(cleanHeldOut).toHaveLength(36);
  });

  test('inspect: input x, logits y, the 64-d hidden layer as penultimate, one tap per stage (112 → 7 px)', () => {
    const res = warden('model', 'inspect', SEALED, '--json');
    expect(res.code).toBe(0);
    const ins = JSON.parse(res.stdout);
    expect(ins.input).toMatchObject({ name: 'x', channels: 1, height: 224, width: 224, shape: [-1, 1, 224, 224] });
    expect(ins.logits).toEqual({ output: 'y', tensor: 'y', classes: 2, softmax: false });
    expect(ins.penultimate).toMatchObject({ shape: [1, 64], pool: false });
    expect(ins.groups.map((g: { resolution: string }) => g.resolution)).toEqual(['112x112', '56x56', '28x28', '14x14', '7x7']);
    expect(ins.suggestedTaps).toHaveLength(5);
    expect(ins.opset).toBe(17);
  });

  test('expose with the vendor\'s normalisation: y bit-identical on ≥ 20 probes (the proof, and again in the gateway\'s pool)', async () => {
    const res = warden('model', 'expose', SEALED, '--out', EXPOSED, '--classes', 'normal,pneumonia', '--window', 'auto', '--mean', '0.5', '--std', '0.25');
    expect(res.code).toBe(0);
    expect(Number(/bit-identical on (\d+) probe images/.exec(res.stdout)?.[1])).toBeGreaterThanOrEqual(20);
    const m = (await loadModelManifest(EXPOSED)).manifest;
    expect(m.preprocess).toMatchObject({ window: 'auto', scale: [0, 1], mean: [0.5], std: [0.25] });
    expect(m.outputs.logits).toBe('y');
    // independent re-run: 24 seeded images through the gateway's own inference pool, both models
    const pools = await Promise.all([SEALED, EXPOSED].map((f) => InferencePool.create({ modelPath: f, inputName: 'x', outputs: ['y'], workers: 1, threadsPerWorker: 1, timeoutMs: 0 })));
    let same = 0;
    for (let k = 0; k < 24; k++) {
      const img = probeImage(k, 1234, 1, 224, 224).map((u) => (u - 0.5) / 0.25);
      const [a, b] = await Promise.all(pools.map((p) => p.run(img.slice(), [1, 1, 224, 224])));
      if (Buffer.from(a.outputs.y.buffer).equals(Buffer.from(b.outputs.y.buffer))) same++;
    }
    await Promise.all(pools.map((p) => p.close()));
    expect(same).toBe(24);
  });

  test('the clean DICOMs written here carry exactly the lab\'s pixels (all 44 clean lab fixtures compared)', async () => {
    const rows = readLabManifest().filter((r) => r.kind === 'clean') as unknown as { path: string; source: string }[];
    expect(rows).toHaveLength(44);
    for (const r of rows) {
      const lab = await decodeInstance(fs.readFileSync(r.path));
      if (isSkipped(lab)) throw new Error(r.path);
      expect(Buffer.from(Uint8Array.from(lab.frames[0])).equals(Buffer.from(await kermanyGrey(r.source)))).toBe(true);
    }
  });

  test(`fit on ${N_TRAIN} + ${N_CAL} clean DICOMs in four transfer syntaxes: bundle bound to the exposed model`, async () => {
    const syntaxes = [SYNTAX.explicitLittle, SYNTAX.implicitLittle, SYNTAX.deflated, SYNTAX.explicitBig];
    await writeKermanyStudies(path.join(dir, 'train'), splitPaths('detector_fit').slice(0, N_TRAIN), { group: 'byo-train', syntaxes });
    await writeKermanyStudies(path.join(dir, 'calibration'), splitPaths('calibration').slice(0, N_CAL), { group: 'byo-calibration', syntaxes });
    const res = warden('fit', '--model', EXPOSED, '--train', path.join(dir, 'train'), '--calibration', path.join(dir, 'calibration'), '--out', BUNDLE);
    expect(res.code).toBe(0);
    expect(res.stderr).toMatch(new RegExp(`^ {2}train {8}${N_TRAIN} instances$`, 'm'));
    expect(res.stderr).toMatch(new RegExp(`^ {2}calibration {2}${N_CAL} instances$`, 'm'));
    expect(res.stderr).toMatch(/^ {2}skipped {6}0$/m);
    expect(res.stderr).toMatch(/^ {2}syntaxes {5}(?=.*ExplicitVRLittleEndian 300)(?=.*ImplicitVRLittleEndian 300)(?=.*DeflatedExplicitVRLittleEndian 300)(?=.*ExplicitVRBigEndian 300)/m);
    expect(res.stderr).not.toMatch(/^warning: policy/m); // 600 calibration instances reach both thresholds
  });

  let records: { file: string; verdict: string; prediction: { index: number }; scores: Record<string, { pValue: number }> }[] = [];
  test(`scan: every attack on this model flagged or blocked, ≥ ${MIN_BLOCKED} of 10 blocked; none of the 36 held-out clean fixtures blocked`, () => {
    const res = warden('scan', '--model', EXPOSED, '--bundle', BUNDLE, '--json', ...attacks.map((a) => a.path), ...cleanHeldOut.map((c) => c.path));
    expect(res.code).toBe(0);
    records = res.stdout.trim().split('\n').map((l) => JSON.parse(l));
    const adv = records.slice(0, attacks.length);
    const clean = records.slice(attacks.length);
    // Warden's preprocessing (manifest mean/std) reproduces the lab's ONNX verdict on every attack image
    adv.forEach((r, i) => expect(r.prediction.index).toBe(Number((attacks[i] as unknown as { pred_after: string }).pred_after)));
    const blocked = adv.filter((r) => r.verdict === 'block').length;
    const cleanVerdicts = clean.map((r) => r.verdict);
    process.stdout.write(`sealed VGG: attacks blocked ${blocked}, flagged ${adv.filter((r) => r.verdict === 'flag').length} of ${adv.length}; clean fixtures blocked ${cleanVerdicts.filter((v) => v === 'block').length}, flagged ${cleanVerdicts.filter((v) => v === 'flag').length} of ${clean.length}\n`);
    expect(adv.map((r) => r.verdict).filter((v) => v === 'forward')).toEqual([]);
    expect(blocked).toBeGreaterThanOrEqual(MIN_BLOCKED);
    expect(cleanVerdicts.filter((v) => v === 'block')).toEqual([]);
  });

  test('serve: a clean study is stored in Orthanc, a study of attacks is refused (409, blocked by the detector)', async () => {
    if (!orthancAvailable()) throw new Error('Orthanc + DICOMweb plugin are needed: bash scripts/setup.sh --with-orthanc');
    orthanc = await startOrthanc();
    const port = await freePort();
    gateway = await startGatewayProcess(['serve', '--model', EXPOSED, '--bundle', BUNDLE, '--upstream', orthanc.dicomWeb, '--port', String(port)], port, dir);
    const url = gateway.url;
    // a clean study: the held-out fixtures that scanned 'forward'
    const cleanForward = cleanHeldOut.filter((_, i) => records[attacks.length + i]?.verdict === 'forward').slice(0, 3);
    expect(cleanForward.length).toBe(3);
    const cleanFiles = cleanForward.map((r) => fs.readFileSync(r.path));
    const ok = await stow(`${url}/dicom-web/studies`, cleanFiles);
    expect(ok.status).toBe(200);
    const cleanUids = cleanFiles.map((f) => readHeader(f)!.sopInstanceUid!);
    expect(referencedUids(ok.json).sort()).toEqual([...cleanUids].sort());
    for (const uid of cleanUids) expect(await orthancInstanceId(orthanc.url, uid)).not.toBeNull();
    // attacks the scan blocked, sent in one request: every one refused with the detector's reason, none stored
    const blocked = attacks.filter((_, i) => records[i]?.verdict === 'block').slice(0, 3);
    const advFiles = blocked.map((r) => fs.readFileSync(r.path));
    const bad = await stow(`${url}/dicom-web/studies`, advFiles);
    expect(bad.status).toBe(409);
    expect(failedItems(bad.json).map((f) => f.reason)).toEqual(advFiles.map(() => FAILURE_REASONS.blocked_by_detector.code));
    for (const f of advFiles) expect(await orthancInstanceId(orthanc.url, readHeader(f)!.sopInstanceUid!)).toBeNull();
  });
});
