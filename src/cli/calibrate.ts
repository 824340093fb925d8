import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Command } from 'commander';
import { SingleBar, Presets } from 'cli-progress';
import { WardenError } from '../core/errors';
import { DEFAULT_MODEL_PATH } from '../core/defaults';
import { loadRuntimeConfig } from '../config';
import { DEFAULT_DECODE_LIMITS, hashUid, readHeader } from '../dicom';
import { viewsOf } from '../models';
import type { Runtime, ScanPipeline } from '../pipeline';
import type { Policy } from '../policy';
import { bundleFromContents, readBundleFile, recalibrateBundle, rowOf, selectRows as selectTableRows, writeBundleFile, type FeatureTable } from '../detectors';
import { renderSiteReportMarkdown, siteReport, type FeatureDump, type SiteReport } from '../eval';
import { EXTRACT_ONLY, cliRuntime, positiveInt } from './runtime';
import { dumpOfRows, extractFeatures, extractRow, featureNames, type FeatureRow } from './features';
import { assignStudies, skipReasonOf, studiesOf } from './fit-sources';
import { sha256File } from './fit';
import { DicomwebPuller, describeSource, studyDateRange, type StudyQuery } from './dicomweb-pull';
import { PullState, type StoredStudy } from './calibrate-state';

/**
 * `warden calibrate --bundle in.bundle --out out.bundle (--from <folder> | --from-dicomweb <url> …)`: the conformal
 * calibration of every detector of a fitted bundle redone on a site's own clean studies, without refitting
 * (`--refit domain`: the domain detectors are refitted on part of the site's studies and calibrated on the rest).
 * The new bundle stays bound to the model's sha256; its header says where the calibration came from (counts, no
 * UIDs). The report (`--report dir`) compares the site with the shipped calibration (docs/calibrate.md).
 *
 * The site sample is put in one canonical order before calibrating — by a digest of each instance's features, never
 * by a UID or by arrival order — so the same instances give the same bundle whether they came from a folder or were
 * pulled (in any order, resumed or not); UAD's split of its calibration data is by position.
 */

interface CalibrateCliOptions {
  bundle: string;
  out: string;
  from?: string;
  fromDicomweb?: string;
  token?: string;
  modality?: string;
  since?: string;
  dateRange?: string;
  limitStudies?: string;
  pageSize: string;
  httpTimeout: string;
  state?: string;
  model?: string;
  config?: string;
  refit?: string;
  calibrationFraction: string;
  seed: string;
  report?: string;
  workers?: string;
  threads?: string;
}

/** The site's clean instances as extracted, with what was left out. */
interface SiteSample {
  dump: FeatureDump;
  studies: number;
  skipped: Record<string, number>;
  /** Studies taken from the resume state instead of the server. */
  resumed: number;
  source: string;
}

const count = (into: Record<string, number>, why: string, k = 1): void => {
  into[why] = (into[why] ?? 0) + k;
};

/** `--modality CR,DX` (default: the policy's applicability.modalities; empty = any). */
function modalityList(flag: string | undefined, policy: Policy): string[] {
  const list = flag !== undefined ? flag.split(',') : policy.applicability.modalities ?? [];
  return [...new Set(list.map((m) => m.trim().toUpperCase()).filter(Boolean))];
}

function modalityMiss(modality: string | undefined, modalities: string[]): string | undefined {
  if (modalities.length === 0) return undefined;
  if (!modality) return 'no Modality';
  return modalities.includes(modality.toUpperCase()) ? undefined : `modality ${modality.toUpperCase()} not in ${modalities.join(',')}`;
}

/** Clean instances of a folder (grouped by study, filtered by modality), through the extract pipeline. */
async function fromFolder(dir: string, pipeline: ScanPipeline, modalities: string[]): Promise<SiteSample> {
  const { byStudy, skipped: unreadable } = await studiesOf(dir);
  const skipped: Record<string, number> = {};
  for (const s of unreadable) count(skipped, s.reason);
  const items = [...byStudy.values()].flat().filter((it) => {
    const miss = modalityMiss(it.meta.modality, modalities);
    if (miss) count(skipped, miss);
    return !miss;
  });
  const dump = items.length
    ? await extractFeatures(pipeline, items, { label: 'site       ', onRecord: (r) => { const why = skipReasonOf(r); if (why) count(skipped, why); } })
    : dumpOfRows(pipeline, []);
  const studies = new Set(dump.meta.map((m) => m.study)).size;
  return { dump, studies, skipped, resumed: 0, source: `folder ${dir}` };
}

/** Clean instances of the studies a QIDO-RS search finds, retrieved study by study (resumable with `state`). */
async function fromDicomweb(opts: CalibrateCliOptions, pipeline: ScanPipeline, modalities: string[]): Promise<SiteSample> {
  const query: StudyQuery = {
    modalities,
    studyDate: studyDateRange(opts.since, opts.dateRange),
    limitStudies: positiveInt(opts.limitStudies, '--limit-studies'),
    pageSize: positiveInt(opts.pageSize, '--page-size') ?? 100,
  };
  const puller = new DicomwebPuller({ baseUrl: opts.fromDicomweb!, token: opts.token ?? process.env.WARDEN_DICOMWEB_TOKEN, timeoutMs: positiveInt(opts.httpTimeout, '--http-timeout') });
  const base = describeSource(opts.fromDicomweb!);
  const filters = [
    modalities.length ? `ModalitiesInStudy ${modalities.join(',')}` : 'any modality',
    query.studyDate ? `StudyDate ${query.studyDate}` : 'any date',
    ...(query.limitStudies ? [`newest ${query.limitStudies} studies`] : []),
  ];
  const source = `dicomweb ${base} (${filters.join('; ')})`;
  const state = opts.state ? PullState.open(opts.state, { modelSha256: pipeline.modelSha256, names: featureNames(pipeline), source: base, modalities }) : undefined;
  try {
    process.stderr.write(`searching ${base} (${filters.join('; ')})…\n`);
    const studies = await puller.searchStudies(query, (note) => process.stderr.write(`note: ${note}\n`));
    if (studies.length === 0) {
      throw new WardenError('CALIBRATION_SOURCE_EMPTY', `No study on ${base} matches ${filters.join('; ')}: nothing to calibrate on.`);
    }
    const rows: FeatureRow[] = [];
    const skipped: Record<string, number> = {};
    let resumed = 0;
    const bar = new SingleBar({ format: 'pull        [{bar}] {value}/{total} studies | {instances} instances | {duration_formatted} | eta {eta_formatted}', stream: process.stderr, etaBuffer: 50, noTTYOutput: true, notTTYSchedule: 10000 }, Presets.shades_classic);
    bar.start(studies.length, 0, { instances: 0 });
    try {
      for (const study of studies) {
        const key = hashUid(study.uid);
        let done = state?.studies.get(key);
        if (done) resumed++;
        else {
          done = await pullStudy(puller, study.uid, key, pipeline, modalities);
          state?.append(done);
        }
        for (const [why, k] of Object.entries(done.skipped)) count(skipped, why, k);
        for (const x of done.instances) rows.push({ meta: { study: done.study, sop: x.sop }, logits: x.features.logits, features: x.features, pred: x.pred });
        bar.increment(1, { instances: rows.length });
      }
    } finally {
      bar.stop();
    }
    // studies with at least one usable instance, as for a folder
    return { dump: dumpOfRows(pipeline, rows), studies: new Set(rows.map((r) => r.meta.study)).size, skipped, resumed, source };
  } finally {
    await puller.close();
  }
}

/** One study retrieved and extracted instance by instance (the bytes of one instance in memory at a time). */
async function pullStudy(puller: DicomwebPuller, uid: string, key: string, pipeline: ScanPipeline, modalities: string[]): Promise<StoredStudy> {
  const instances: StoredStudy['instances'] = [];
  const skipped: Record<string, number> = {};
  const result = await puller.retrieveStudy(uid, async (bytes) => {
    const id = readHeader(bytes);
    const miss = id === null ? 'not a DICOM Part-10 file' : modalityMiss(id.modality, modalities);
    if (miss) return count(skipped, miss);
    const sop = id?.sopInstanceUid ? hashUid(id.sopInstanceUid) : '';
    const row = await extractRow(pipeline, bytes, { study: key, sop }, `instance ${sop || '(no SOP Instance UID)'} of study ${key}`, (r) => {
      const why = skipReasonOf(r);
      if (why) count(skipped, why);
    });
    if (row) instances.push({ sop, pred: row.pred, features: row.features });
  }, DEFAULT_DECODE_LIMITS.maxBytes);
  for (const [why, k] of Object.entries(result.skipped)) count(skipped, why, k);
  return { study: key, instances, skipped };
}

/**
 * The canonical order of a site sample: by a digest of each instance's features (ties: the hashed SOP Instance UID);
 * an instance whose SOP Instance UID came twice counts once. Returns the kept rows in order, and their digests.
 */
export function canonicalOrder(table: FeatureTable, meta: Record<string, string>[]): { order: number[]; digests: string[] } {
  const names = Object.keys(table.layers).sort();
  const digests = Array.from({ length: table.n }, (_, i) => {
    const h = createHash('sha256');
    for (const name of names) {
      const row = rowOf(table.layers[name], i);
      h.update(new Uint8Array(row.buffer, row.byteOffset, row.byteLength));
    }
    return h.digest('hex');
  });
  const sorted = digests.map((d, i) => i).sort((a, b) => (digests[a] < digests[b] ? -1 : digests[a] > digests[b] ? 1 : (meta[a].sop ?? '') < (meta[b].sop ?? '') ? -1 : 1));
  const seen = new Set<string>();
  const order = sorted.filter((i) => {
    const sop = meta[i].sop;
    if (!sop) return true;
    if (seen.has(sop)) return false;
    seen.add(sop);
    return true;
  });
  return { order, digests: order.map((i) => digests[i]) };
}

/**
 * `--refit`: the site's studies split (seeded) into a part the refitted detectors are fitted on and a part they are
 * calibrated on. Study keys come from the instances' feature digests, so the split depends on the data and the seed
 * only (not on the install's UID-hash key).
 */
function refitSplit(table: FeatureTable, studyOf: string[], digests: string[], fraction: number, seed: number): { train: FeatureTable; calibration: FeatureTable; studies: { train: number; calibration: number } } {
  const byStudy = new Map<string, number[]>();
  studyOf.forEach((s, i) => byStudy.set(s, [...(byStudy.get(s) ?? []), i]));
  if (byStudy.size < 2) throw new WardenError('USAGE', `--refit needs at least 2 studies to fit on some and calibrate on others (the site sample has ${byStudy.size}).`);
  const groups = new Map<string, number[]>();
  for (const rows of byStudy.values()) {
    const key = createHash('sha256').update(rows.map((i) => digests[i]).sort().join('')).digest('hex');
    groups.set(key, rows);
  }
  const split = assignStudies(groups, fraction, seed);
  const sortNum = (v: number[]) => [...v].sort((a, b) => a - b);
  return { train: selectTableRows(table, sortNum(split.train)), calibration: selectTableRows(table, sortNum(split.calibration)), studies: split.studies };
}

const pct = (x: number | undefined) => (x === undefined ? '–' : `${(100 * x).toFixed(1)} %`);

function summaryLines(r: SiteReport, sample: SiteSample, extra: { bundle: string; bytes: number; refitted: string[]; recalibrated: string[]; report?: string }): string[] {
  const skippedTotal = Object.values(sample.skipped).reduce((a, b) => a + b, 0);
  const lines = [
    'summary',
    `  source       ${sample.source}`,
    `  site         ${r.n} clean instances from ${sample.studies} studies${sample.resumed ? ` (${sample.resumed} studies resumed from the state file)` : ''}`,
    `  skipped      ${skippedTotal}${skippedTotal ? `: ${Object.entries(sample.skipped).map(([why, n]) => `${n} × ${why}`).join(', ')}` : ''}`,
    `  detectors    recalibrated ${extra.recalibrated.join(', ') || '–'}${extra.refitted.length ? `; refitted and calibrated on held-out studies: ${extra.refitted.join(', ')}` : ''}`,
  ];
  for (const s of r.signals) {
    lines.push(`  ${s.signal.padEnd(12)} ${s.decideBy.join('+')}: the shipped calibration would flag ${pct(s.shipped.flag)} of the site's clean instances at p ≤ ${s.flagFpr}` +
      `${s.blockFpr !== undefined ? ` and block ${pct(s.shipped.block)} at p ≤ ${s.blockFpr}` : ''}; recalibrated: at most ${pct(s.nominal.flag)}${s.blockFpr !== undefined ? ` / ${pct(s.nominal.block)}` : ''}`);
  }
  lines.push(`  bundle       ${extra.bundle} (${(extra.bytes / 1e6).toFixed(2)} MB), bound to model sha256 ${r.about.modelSha256.slice(0, 12)}…`);
  if (extra.report) lines.push(`  report       ${path.join(extra.report, 'report.md')}`);
  return lines;
}

/** Writes report.md, report.json and one SVG per detector into `dir`. */
function writeReport(dir: string, report: SiteReport, plots: Record<string, string>): void {
  fs.mkdirSync(dir, { recursive: true });
  const files: Record<string, string> = {};
  for (const [id, svg] of Object.entries(plots)) {
    files[id] = `${id}.svg`;
    fs.writeFileSync(path.join(dir, files[id]), svg);
  }
  fs.writeFileSync(path.join(dir, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);
  fs.writeFileSync(path.join(dir, 'report.md'), renderSiteReportMarkdown(report, files));
}

export async function runCalibrate(opts: CalibrateCliOptions): Promise<void> {
  if (Boolean(opts.from) === Boolean(opts.fromDicomweb)) throw new WardenError('USAGE', 'Give one source: --from <folder> or --from-dicomweb <url>.');
  if (opts.from) {
    const pullOnly = ([['--token', opts.token], ['--since', opts.since], ['--date-range', opts.dateRange], ['--limit-studies', opts.limitStudies], ['--state', opts.state]] as const).filter(([, v]) => v !== undefined).map(([k]) => k);
    if (pullOnly.length) throw new WardenError('USAGE', `${pullOnly.join(', ')} only apply to --from-dicomweb.`);
  }
  if (opts.refit !== undefined && opts.refit !== 'domain') throw new WardenError('USAGE', `--refit takes 'domain' (the detectors whose signal is domain; got ${opts.refit}).`);
  const fraction = Number(opts.calibrationFraction);
  const seed = Number(opts.seed);
  if (opts.refit && !(fraction > 0 && fraction < 1)) throw new WardenError('USAGE', `--calibration-fraction must be in (0, 1) (got ${opts.calibrationFraction}).`);
  if (opts.refit && !Number.isInteger(seed)) throw new WardenError('USAGE', `--seed must be an integer (got ${opts.seed}).`);
  const modelPath = path.resolve(opts.model ?? DEFAULT_MODEL_PATH);
  const modelSha256 = sha256File(modelPath);
  // the binding first: a bundle for another model is refused before anything is pulled
  const contents = readBundleFile(opts.bundle);
  const shipped = bundleFromContents(contents, modelSha256, `The detector bundle ${opts.bundle}`);
  const policy = loadRuntimeConfig(opts.config).policy;
  const modalities = modalityList(opts.modality, policy);
  let runtime: Runtime | undefined;
  try {
    runtime = await cliRuntime({ config: opts.config, model: modelPath, workers: opts.workers, threads: opts.threads }, { ...EXTRACT_ONLY, views: viewsOf(shipped.requiredLayers) });
    const { pipeline } = runtime;
    const sample = opts.from ? await fromFolder(opts.from, pipeline, modalities) : await fromDicomweb(opts, pipeline, modalities);
    const skippedText = Object.entries(sample.skipped).map(([why, n]) => `${n} × ${why}`).join(', ');
    if (sample.dump.table.n === 0) {
      throw new WardenError('CALIBRATION_SOURCE_EMPTY', `${sample.source} holds no usable clean instance${skippedText ? ` (left out: ${skippedText})` : ''}: nothing to calibrate on.`);
    }
    if (sample.dump.table.n < 2) throw new WardenError('CALIBRATION_SOURCE_EMPTY', `${sample.source} holds 1 usable clean instance; calibration needs at least 2 (many more for useful thresholds).`);
    const { order, digests } = canonicalOrder(sample.dump.table, sample.dump.meta);
    const site = selectTableRows(sample.dump.table, order);
    const studyOf = order.map((i) => sample.dump.meta[i].study ?? '');
    const dropped = sample.dump.table.n - site.n;
    if (dropped) count(sample.skipped, 'duplicate SOP Instance UID', dropped);
    const refit = opts.refit ? refitSplit(site, studyOf, digests, fraction, seed) : undefined;
    const siteFacts = { instances: site.n, studies: sample.studies, ...(Object.keys(sample.skipped).length ? { skipped: sample.skipped } : {}) };
    const result = recalibrateBundle(contents, site, {
      source: sample.source,
      site: siteFacts,
      ...(refit ? { refit: { signals: ['domain'], train: refit.train, calibration: refit.calibration, split: `by study, calibration fraction ${fraction}, seed ${seed}: ${refit.studies.train} studies to fit, ${refit.studies.calibration} to calibrate` } } : {}),
    });
    fs.mkdirSync(path.dirname(path.resolve(opts.out)), { recursive: true });
    writeBundleFile(opts.out, result.contents);
    const shippedCalibration = Object.fromEntries(contents.detectors.map((d) => [d.id, d.state.arrays.calibration_scores ?? new Float64Array(0)]));
    const { report, plots } = siteReport({
      policy, classes: pipeline.manifest.classes, site, shipped: shipped.detectors, shippedCalibration, recalibrated: result.bundle.detectors,
      refitted: result.refitted, calibratedOn: result.calibratedOn,
      about: {
        source: sample.source, bundleIn: opts.bundle, bundleOut: opts.out, modelSha256, studies: sample.studies, skipped: sample.skipped,
        shippedCalibration: { n: contents.header.calibration.n, ...(contents.header.calibration.source ? { source: contents.header.calibration.source } : {}) },
      },
    });
    if (opts.report) writeReport(opts.report, report, plots);
    const recalibrated = Object.keys(result.calibratedOn).filter((id) => !result.refitted.includes(id));
    process.stderr.write(`${summaryLines(report, sample, { bundle: opts.out, bytes: fs.statSync(opts.out).size, refitted: result.refitted, recalibrated, report: opts.report }).join('\n')}\n`);
    for (const w of report.warnings) process.stderr.write(`warning: ${w.message}\n`);
  } finally {
    await runtime?.close();
  }
}

export function register(program: Command): void {
  program
    .command('calibrate')
    .description("Recalibrate a fitted bundle on a site's own clean studies (from a folder or a DICOMweb server), without refitting; writes a new bundle and a report")
    .requiredOption('--bundle <file>', 'the fitted bundle to recalibrate (e.g. models/warden-cxr-ref.bundle)')
    .requiredOption('--out <file>', 'the recalibrated bundle to write (still bound to the model)')
    .option('--from <dir>', "a folder of the site's clean DICOM studies")
    .option('--from-dicomweb <url>', "a DICOMweb base URL to pull the site's clean studies from (QIDO-RS search, WADO-RS retrieve with transfer-syntax=*)")
    .option('--token <token>', 'with --from-dicomweb: bearer token for the server (default: $WARDEN_DICOMWEB_TOKEN, which keeps it out of the process list)')
    .option('--modality <list>', "only these modalities, comma-separated (QIDO ModalitiesInStudy and each instance's Modality; default: the policy's applicability.modalities)")
    .option('--since <YYYYMMDD>', 'with --from-dicomweb: studies of this date or later')
    .option('--date-range <A-B>', 'with --from-dicomweb: studies dated YYYYMMDD-YYYYMMDD')
    .option('--limit-studies <n>', 'with --from-dicomweb: the newest n matching studies (by StudyDate, StudyTime)')
    .option('--page-size <n>', 'with --from-dicomweb: QIDO-RS page size (limit/offset paging)', '100')
    .option('--http-timeout <ms>', 'with --from-dicomweb: time allowed for an answer and between two body chunks', '60000')
    .option('--state <file>', 'with --from-dicomweb: resume file; an interrupted pull rerun with the same file continues where it stopped')
    .option('--model <file>', 'ONNX model the bundle belongs to (default: the embedded reference model)')
    .option('-c, --config <file>', "the gateway configuration: its policy's thresholds are what the report checks (default: $WARDEN_CONFIG, else the defaults)")
    .option('--refit <signal>', "also refit the detectors of this signal on site data ('domain'): fitted on some studies, calibrated on the others")
    .option('--calibration-fraction <f>', 'with --refit: share of the site instances (whole studies) kept for calibration', '0.5')
    .option('--seed <n>', 'with --refit: seed of the study split', '1')
    .option('--report <dir>', 'write report.md, report.json and one SVG per detector here')
    .option('--workers <n>', 'inference worker threads', '1')
    .option('--threads <n>', 'ONNX Runtime threads per worker', '1')
    .addHelpText('after', `
Examples:
  warden calibrate --bundle models/warden-cxr-ref.bundle --from site-clean/ --out site.bundle --report calib/
  warden calibrate --bundle models/warden-cxr-ref.bundle --out site.bundle --report calib/ \\
      --from-dicomweb https://pacs.example.org/dicom-web --modality CR,DX \\
      --limit-studies 500 --state calib/pull.state

Every detector's conformal calibration is recomputed on the site's clean instances (p-value floor 1/(n+1)); the
fitted state is kept. The report compares the site with the shipped calibration (rates at the policy thresholds of
--config, a plot per detector) and warns when the sample is too small or differs strongly. See docs/calibrate.md.`)
    .action(async (opts: CalibrateCliOptions) => {
      await runCalibrate(opts);
    });
}
