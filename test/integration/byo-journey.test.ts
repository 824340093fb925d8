/**
 * docs/byo-model.md's five commands, parsed out of the doc and run as written, as a user would (bin/warden.js in a
 * folder holding vendor.onnx, clean/ and incoming/). Only the two port numbers of `warden serve` are replaced: the
 * upstream is a real Orthanc started here, the gateway listens on a free port.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildSealedModel } from '../fixtures/onnx/build-test-model';
import { LAB_DIR } from '../helpers/lab-fixtures';
import { freePort, orthancAvailable, startOrthanc, type OrthancHandle } from '../helpers/orthanc';
import { startGatewayProcess, type GatewayProcess } from '../helpers/gateway-process';
import { orthancInstanceId } from '../helpers/orthanc-client';
import { referencedUids, stow } from '../helpers/stow';
import { loadModelManifest } from '../../src/models/manifest';
import { readBundleFile } from '../../src/detectors';
import { readHeader } from '../../src/dicom';

jest.setTimeout(180000);
const ROOT = path.resolve(__dirname, '..', '..');
const DOC = path.join(ROOT, 'docs', 'byo-model.md');
const CORPUS = path.resolve(ROOT, '..', 'shared', 'corpus', 'dicom');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-byo-journey-'));
const sha = (f: string) => createHash('sha256').update(fs.readFileSync(f)).digest('hex');

/** The commands of the fenced block after the byo-journey marker. */
export function journeyCommands(markdown: string): string[] {
  const at = markdown.indexOf('<!-- byo-journey');
  const block = /```sh\n([\s\S]*?)```/.exec(markdown.slice(at));
  if (at < 0 || !block) throw new Error('no byo-journey block in docs/byo-model.md');
  return block[1].split('\n').map((l) => l.trim()).filter(Boolean);
}

function argv(command: string): string[] {
  const words = command.split(/\s+/);
  if (words[0] !== 'warden') throw new Error(`not a warden command: ${command}`);
  return [path.join(ROOT, 'bin', 'warden.js'), ...words.slice(1)];
}

function run(command: string) {
  const res = spawnSync(process.execPath, argv(command), { cwd: dir, encoding: 'utf8', timeout: 120000, env: { ...process.env, WARDEN_LOG_LEVEL: 'error' } });
  return { code: res.status, stdout: res.stdout, stderr: res.stderr };
}

const commands = journeyCommands(fs.readFileSync(DOC, 'utf8'));
let orthanc: OrthancHandle | undefined;
let gateway: GatewayProcess | undefined;

beforeAll(() => {
  fs.writeFileSync(path.join(dir, 'vendor.onnx'), buildSealedModel());
  fs.cpSync(path.join(LAB_DIR, 'clean'), path.join(dir, 'clean'), { recursive: true });
  // what a real export folder holds besides images: a non-image, a cut-off file, something that is not DICOM at all
  fs.copyFileSync(path.join(CORPUS, 'pydicom', 'rtplan.dcm'), path.join(dir, 'clean', 'rtplan.dcm'));
  const whole = fs.readFileSync(path.join(LAB_DIR, 'clean', 'clean_test', 'study0005', 'IM07.dcm'));
  fs.writeFileSync(path.join(dir, 'clean', 'truncated.dcm'), whole.subarray(0, 20000));
  fs.writeFileSync(path.join(dir, 'clean', 'thumbs.db'), 'not a DICOM file');
  fs.cpSync(path.join(LAB_DIR, 'adversarial', 'adversarial_pgd_linf_8'), path.join(dir, 'incoming', 'study-a'), { recursive: true });
  fs.cpSync(path.join(LAB_DIR, 'benign'), path.join(dir, 'incoming', 'study-b'), { recursive: true });
});
afterAll(async () => {
  await gateway?.stop();
  await orthanc?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('docs/byo-model.md: the five-command journey, as written', () => {
  test('the doc has exactly five warden commands: inspect, expose, fit, scan, serve', () => {
    expect(commands.map((c) => c.split(/\s+/).slice(0, 3).join(' '))).toEqual([
      'warden model inspect', 'warden model expose', 'warden fit --model', 'warden scan --model', 'warden serve --model',
    ]);
  });

  test('1. inspect names the input, the logits, the penultimate and four suggested taps', () => {
    const res = run(commands[0]);
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/^input {3}input float32 \[-1, 1, 224, 224\] NCHW, 1 channel\(s\), dynamic batch$/m);
    expect(res.stdout).toMatch(/^output {2}scores float32 \[batch, 2\] {2}← logits, 2 classes$/m);
    expect(res.stdout).toMatch(/^penultimate {2}head\/hidden \[N, 16\], the input of head\/fc2$/m);
    expect(res.stdout).toMatch(/^suggested taps \(4\): block1\/relu block2\/relu block3\/out block4\/relu$/m);
  });

  test('2. expose writes the exposed model, proves the original output bit-identical on ≥ 20 probes, leaves vendor.onnx alone', async () => {
    const before = sha(path.join(dir, 'vendor.onnx'));
    const res = run(commands[1]);
    expect(res.code).toBe(0);
    const proof = /proof {8}original output\(s\) scores bit-identical on (\d+) probe images/.exec(res.stdout);
    expect(Number(proof?.[1])).toBeGreaterThanOrEqual(20);
    expect(sha(path.join(dir, 'vendor.onnx'))).toBe(before);
    const exposed = await loadModelManifest(path.join(dir, 'vendor.warden.onnx'));
    expect(exposed.manifestSource).toBe('metadata');
    expect(exposed.manifest.classes).toEqual(['normal', 'pneumonia']);
    expect(exposed.manifest.outputs).toEqual({
      logits: 'scores', penultimate: 'penultimate',
      features: ['block1_relu_mean', 'block1_relu_std', 'block2_relu_mean', 'block2_relu_std', 'block3_out_mean', 'block3_out_std', 'block4_relu_mean', 'block4_relu_std', 'penultimate'],
    });
    expect(res.stdout).toContain(`sha256 ${exposed.sha256.slice(0, 12)}…; the sealed model is unchanged`);
  });

  test('3. fit --from splits by study, skips what it cannot use with the reason, binds the bundle to the exposed model', () => {
    const res = run(commands[2]);
    expect(res.code).toBe(0);
    const m = /^ {2}train {8}(\d+) instances from (\d+) studies\n {2}calibration {2}(\d+) instances from (\d+) studies$/m.exec(res.stderr);
    expect(m).not.toBeNull();
    expect(Number(m![1]) + Number(m![3])).toBe(44); // every clean fixture image used, nothing else
    expect(res.stderr).toMatch(/^ {2}skipped {6}3: 1 × not a DICOM Part-10 file, 1 × not an image \(RT plan, not an image\), 1 × error DICOM_TRUNCATED$/m);
    expect(res.stderr).toMatch(/^ {2}detectors {4}kd, lid, mgm, uad, squeeze, margin; left out: nrd .*; coherence \(needs feature layer stage1_mean/m);
    expect(res.stderr).toMatch(/\[█+\] 22\/22/); // the progress bar
    const bundle = readBundleFile(path.join(dir, 'vendor.bundle'));
    expect(bundle.header.model.sha256).toBe(sha(path.join(dir, 'vendor.warden.onnx')));
    // 22 calibration instances cannot reach the default policy's thresholds, and fit says so
    expect(res.stderr).toMatch(/^warning: policy\.adversarial\.blockFpr 0\.005 is below/m);
  });

  test('4. scan reads the exposed model and the bundle and scans every incoming instance', () => {
    const res = run(commands[3]);
    expect(res.code).toBe(0);
    const incoming = fs.readdirSync(path.join(dir, 'incoming'), { recursive: true }).filter((f) => String(f).endsWith('.dcm'));
    expect(res.stdout).toMatch(/^model vendor\.warden sha256:[0-9a-f]{12} sha256:[0-9a-f]{12} provider cpu detectors kd,lid,mgm,uad,squeeze,margin$/m);
    expect(res.stdout).toContain(`${incoming.length} instances in `);
    expect(res.stdout).toMatch(new RegExp(`scanned ${incoming.length}, skipped 0, error 0; verdicts: forward \\d+, flag \\d+, block \\d+`));
    // the same command with --json: every record carries the six detectors' p-values and a verdict
    const json = run(`${commands[3]} --json`);
    const recs = json.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(recs).toHaveLength(incoming.length);
    for (const r of recs) {
      expect(r.status).toBe('scanned');
      expect(Object.keys(r.scores).sort()).toEqual(['kd', 'lid', 'margin', 'mgm', 'squeeze', 'uad']);
      expect(['forward', 'flag', 'block']).toContain(r.verdict);
    }
  });

  test('5. serve protects the exposed model in front of a real Orthanc (STOW-RS round trip)', async () => {
    if (!orthancAvailable()) throw new Error('Orthanc + DICOMweb plugin are needed: bash scripts/setup.sh --with-orthanc');
    orthanc = await startOrthanc();
    const port = await freePort();
    const command = commands[4].replace('http://127.0.0.1:8042/dicom-web', orthanc.dicomWeb).replace('--port 8080', `--port ${port}`);
    expect(command).not.toBe(commands[4]);
    gateway = await startGatewayProcess(argv(command).slice(1), port, dir);
    const url = gateway.url;
    const study = path.join(dir, 'clean', 'clean_test', 'study0004');
    const files = fs.readdirSync(study).map((f) => fs.readFileSync(path.join(study, f)));
    const res = await stow(`${url}/dicom-web/studies`, files);
    expect(res.status).toBe(200);
    const uids = files.map((f) => readHeader(f)!.sopInstanceUid!);
    expect(referencedUids(res.json).sort()).toEqual([...uids].sort());
    for (const uid of uids) expect(await orthancInstanceId(orthanc.url, uid)).not.toBeNull();
    const metrics = await (await fetch(`${url}/metrics`)).text();
    expect(metrics).toMatch(/warden_/);
  });
});

describe('warden model expose: values the flags do not give', () => {
  test('without a terminal, a missing --classes is a USAGE error naming the flag (exit 2, nothing written)', () => {
    const res = run('warden model expose vendor.onnx --out no-classes.onnx --window auto');
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/^warden: USAGE: --classes is required when stdin is not a terminal: names of the 2 classes of output 'scores'/m);
    expect(fs.existsSync(path.join(dir, 'no-classes.onnx'))).toBe(false);
  });

  test('in a terminal (a pseudo-terminal from script(1)), missing values are asked for and end up in the manifest', async () => {
    const answers = 'normal,pneumonia\nauto\n0,1\n0.5\n0.25\nfalse\n';
    const cmd = `${process.execPath} ${path.join(ROOT, 'bin', 'warden.js')} model expose vendor.onnx --out asked.onnx`;
    const res = spawnSync('script', ['-qec', cmd, '/dev/null'], { cwd: dir, input: answers, encoding: 'utf8', timeout: 120000 });
    expect(res.status).toBe(0);
    expect(res.stdout).toMatch(/Names of the 2 classes of output 'scores', in order, comma-separated:/);
    const m = (await loadModelManifest(path.join(dir, 'asked.onnx'))).manifest;
    expect(m.classes).toEqual(['normal', 'pneumonia']);
    expect(m.preprocess).toMatchObject({ window: 'auto', scale: [0, 1], mean: [0.5], std: [0.25], invertMonochrome1: false });
  });

  test('a channels-last model is refused with MODEL_UNSUPPORTED_LAYOUT (exit 2)', () => {
    fs.writeFileSync(path.join(dir, 'nhwc.onnx'), buildSealedModel({ layout: 'NHWC' }));
    const res = run('warden model inspect nhwc.onnx');
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/^warden: MODEL_UNSUPPORTED_LAYOUT: Input 'input' has shape \[batch, 224, 224, 1\], which looks channels-last \(NHWC\)/m);
  });
});
