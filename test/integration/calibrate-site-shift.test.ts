/**
 * Recalibration moves the operating point (issue 13): a "site" whose images differ benignly from the fit data —
 * the 624 Kermany test-split images (never in the shipped bundle's fit or calibration splits) after unsharp masking
 * (σ = 2 px, amount 1: edge enhancement as CR/DX post-processing does), written as DICOM studies of 4 — is split by
 * study (seed 1) into two halves. `warden calibrate` recalibrates the shipped bundle on one half; `warden scan` on the
 * other half measures the clean flag rate at each signal's flagFpr with the shipped bundle (before) and the new one
 * (after). Goal: after within [0.5×, 2×] nominal.
 *
 * The policy (a configuration file, read by calibrate and scan alike): adversarial = coherence (the shipped
 * adversarial detector that edge enhancement moves most), flag at p ≤ 0.05; domain = uad, flag at p ≤ 0.05 — not
 * the default 0.01, which 312 held-out images cannot resolve (≈ 3 expected flags). One detector per signal, so the
 * rate tests the calibration, not the Bonferroni combination.
 * The shift, its strength and the seed were fixed before the first recalibration was run; nothing here is tuned on
 * the held-out half.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { splitPaths } from '../helpers/write-dicom';
import { writeShiftedSite, type ShiftedSite } from '../helpers/benign-shift';
import { readBundleFile } from '../../src/detectors';

jest.setTimeout(900000);
const ROOT = path.resolve(__dirname, '..', '..');
const SHIPPED = path.join(ROOT, 'models', 'warden-cxr-ref.bundle');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-calibrate-shift-'));
const CONFIG = path.join(dir, 'warden.yaml');
const SITE_BUNDLE = path.join(dir, 'site.bundle');
const REPORT = path.join(dir, 'report');
const FLAG_FPR = 0.05;

function warden(...args: string[]) {
  const res = spawnSync(process.execPath, [path.join(ROOT, 'bin', 'warden.js'), ...args], { cwd: dir, encoding: 'utf8', timeout: 600000, maxBuffer: 256 * 1024 * 1024, env: { ...process.env, WARDEN_LOG_LEVEL: 'error' } });
  return { code: res.status, stdout: res.stdout, stderr: res.stderr };
}

interface Rates { n: number; adversarial: number; domain: number; detectors: Record<string, number> }

/** Clean flag rates of `warden scan --json` records: per signal (a reason of that signal) and per detector (p ≤ 0.05). */
function ratesOf(stdout: string): Rates {
  const records = stdout.trim().split('\n').map((l) => JSON.parse(l) as { status: string; reasons?: { signal: string }[]; scores?: Record<string, { pValue: number }> });
  const scanned = records.filter((r) => r.status === 'scanned');
  const share = (f: (r: (typeof scanned)[number]) => boolean) => scanned.filter(f).length / scanned.length;
  const ids = Object.keys(scanned[0]?.scores ?? {});
  return {
    n: scanned.length,
    adversarial: share((r) => (r.reasons ?? []).some((x) => x.signal === 'adversarial')),
    domain: share((r) => (r.reasons ?? []).some((x) => x.signal === 'domain')),
    detectors: Object.fromEntries(ids.map((id) => [id, share((r) => (r.scores?.[id]?.pValue ?? 1) <= FLAG_FPR)])),
  };
}

let site: ShiftedSite;
let before: Rates;
let after: Rates;
let calibrate: ReturnType<typeof warden>;

beforeAll(async () => {
  site = await writeShiftedSite(path.join(dir, 'site'), splitPaths('test'), { perStudy: 4, seed: 1, sigma: 2, amount: 1 });
  fs.writeFileSync(CONFIG, [
    'policy:',
    '  adversarial: { decideBy: [coherence], combine: bonferroni, flagFpr: 0.05, blockFpr: 0.005 }',
    '  domain: { decideBy: [uad], combine: bonferroni, flagFpr: 0.05 }',
    '',
  ].join('\n'));
  calibrate = warden('calibrate', '--bundle', SHIPPED, '--from', site.calibrate, '--out', SITE_BUNDLE, '--config', CONFIG, '--report', REPORT);
  const scanBefore = warden('scan', site.heldOut, '--json', '--config', CONFIG, '--bundle', SHIPPED);
  const scanAfter = warden('scan', site.heldOut, '--json', '--config', CONFIG, '--bundle', SITE_BUNDLE);
  expect(scanBefore.code).toBe(0);
  expect(scanAfter.code).toBe(0);
  before = ratesOf(scanBefore.stdout);
  after = ratesOf(scanAfter.stdout);
  // the numbers docs/evaluation.md reports
  process.stdout.write(`calibrate-site-shift: calibrated on ${site.instances.calibrate} instances (${site.studies.calibrate} studies), held out ${site.instances.heldOut} (${site.studies.heldOut} studies)\n` +
    `  before ${JSON.stringify(before)}\n  after  ${JSON.stringify(after)}\n`);
});

afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('warden calibrate on a benignly shifted site (unsharp masking), checked on held-out studies', () => {
  test('the site is the whole Kermany test split, halved by study, and calibrate succeeds on one half', () => {
    expect(site.instances.calibrate + site.instances.heldOut).toBe(624);
    expect(Math.abs(site.instances.calibrate - site.instances.heldOut)).toBeLessThanOrEqual(4);
    expect(calibrate.stderr).toMatch(/site {9}312 clean instances from 78 studies/);
    expect(calibrate.code).toBe(0);
    expect(before.n).toBe(site.instances.heldOut);
    expect(after.n).toBe(site.instances.heldOut);
  });

  test('the shift matters: the shipped calibration flags the held-out half at more than twice the nominal rate for each signal', () => {
    expect(before.adversarial).toBeGreaterThan(2 * FLAG_FPR);
    expect(before.domain).toBeGreaterThan(2 * FLAG_FPR);
  });

  test('after recalibration on the other half, each signal flags the held-out half within [0.5×, 2×] nominal', () => {
    expect(after.adversarial).toBeGreaterThanOrEqual(0.5 * FLAG_FPR);
    expect(after.adversarial).toBeLessThanOrEqual(2 * FLAG_FPR);
    expect(after.domain).toBeGreaterThanOrEqual(0.5 * FLAG_FPR);
    expect(after.domain).toBeLessThanOrEqual(2 * FLAG_FPR);
  });

  test('the new bundle keeps the fitted state and the model binding, and says where its calibration came from', () => {
    const shipped = readBundleFile(SHIPPED);
    const out = readBundleFile(SITE_BUNDLE);
    expect(out.header.model).toEqual(shipped.header.model);
    expect(out.header.fit).toEqual(shipped.header.fit);
    expect(out.header.calibration).toMatchObject({ n: 312, source: `folder ${site.calibrate}`, site: { instances: 312, studies: 78 }, previous: { n: 782 } });
    expect(JSON.stringify(out.header)).not.toMatch(/2\.25\.\d{10,}/); // no UID
    for (const d of shipped.detectors) {
      const o = out.detectors.find((x) => x.id === d.id)!;
      for (const [name, arr] of Object.entries(d.state.arrays)) {
        if (/calibration/.test(name)) continue;
        const bytes = (a: ArrayBufferView) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
        expect(bytes(o.state.arrays[name]).equals(bytes(arr))).toBe(true); // fitted state untouched
      }
      expect(o.state.arrays.calibration_scores.length).toBe(d.id === 'uad' ? 156 : 312);
    }
  });

  test('the report says what the shipped calibration would do to the site and warns about what 312 instances cannot do', () => {
    const report = JSON.parse(fs.readFileSync(path.join(REPORT, 'report.json'), 'utf8'));
    const adv = report.signals.find((s: { signal: string }) => s.signal === 'adversarial');
    const dom = report.signals.find((s: { signal: string }) => s.signal === 'domain');
    // measured on the calibration half: the same direction as the held-out half
    expect(adv.shipped.flag).toBeGreaterThan(2 * FLAG_FPR);
    expect(dom.shipped.flag).toBeGreaterThan(2 * FLAG_FPR);
    const codes = report.warnings.map((w: { code: string }) => w.code);
    expect(codes).toContain('shipped_rate_high');
    expect(codes).toContain('distribution_differs');
    // blocking at p ≤ 0.005 needs ≥ 199 calibration scores: coherence (marginal) has 312; UAD (per class) ~156, but
    // UAD only flags here, at 0.05
    expect(codes).not.toContain('threshold_unreachable');
    expect(fs.readFileSync(path.join(REPORT, 'report.md'), 'utf8')).toMatch(/\| adversarial \(flag\) \| coherence \| p ≤ 0\.05 \|/);
    for (const id of ['kd', 'lid', 'mgm', 'uad', 'nrd']) expect(fs.readFileSync(path.join(REPORT, `${id}.svg`), 'utf8')).toMatch(/^<svg/);
  });
});
