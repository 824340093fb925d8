import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Command } from 'commander';
import { WardenError } from '../core/errors';
import { DEFAULT_MODEL_PATH } from '../core/defaults';
import { EXTRACT_ONLY, cliRuntime, type ModelFlags } from './runtime';
import { instanceOf, loadBundle, readBundleFile, type FittedBundle } from '../detectors';
import { viewsOf } from '../models';
import { listFiles, parseSourceSpec, toCsv, truthy } from '../eval';
import {
  auroc, eps255, epsLabel, groupKeys, rateAtOrBelow, renderMarkdown, rocCurve, rocSvg,
  type BenignRow, type CleanRow, type EvalReport, type EvalRow,
} from '../eval';
import { extractFeatures, itemsOf, selectDump, type InputItem } from './features';
import { readFeatureDump, type FeatureDump } from '../eval';
import { sha256File } from './fit';
import { loadRuntimeConfig } from '../config';
import { decodeInstance, isSkipped } from '../dicom';
import { evaluatePolicy, readAdaptiveReport, renderAdaptiveMarkdown, renderPolicyMarkdown } from '../eval';

/**
 * `warden eval --bundle <b> --manifest <lab manifest.csv | feature dump> --out <dir>`:
 * report.md, report.json, scores.csv and one ROC plot (SVG) per attack × ε. Negatives are clean rows of the
 * test split; positives are successful adversarial rows; benign rows give per-shift flag rates. Operating
 * points come from the bundle's calibration scores. `--baselines <json>` merges rows computed by the lab
 * (lab/detectors/baselines.py) on the same feature dump; `--adaptive <json>` adds the lab's adaptive-attack report
 * (lab/adaptive/report.py) as a section.
 */

interface EvalCliOptions extends ModelFlags {
  bundle: string;
  manifest: string;
  out: string;
  baselines?: string[];
  adaptive?: string;
  cleanSplit: string;
  splitColumn: string;
  foreign?: string[];
  foreignModalities: string;
}

function num(v: string | undefined): number | undefined {
  const x = Number(v);
  return v === undefined || v === '' || !Number.isFinite(x) ? undefined : x;
}

export interface ScoredSet {
  meta: Record<string, string>[];
  /** detector → scores / p-values per row */
  scores: Record<string, Float64Array>;
  pValues: Record<string, Float64Array>;
  scoreMsPerInstance: number;
}

/** Two scored sets one after the other. */
export function concatScored(a: ScoredSet, b: ScoredSet): ScoredSet {
  const cat = (x: Float64Array, y: Float64Array) => { const z = new Float64Array(x.length + y.length); z.set(x); z.set(y, x.length); return z; };
  const n = a.meta.length + b.meta.length;
  return {
    meta: [...a.meta, ...b.meta],
    scores: Object.fromEntries(Object.keys(a.scores).map((id) => [id, cat(a.scores[id], b.scores[id])])),
    pValues: Object.fromEntries(Object.keys(a.pValues).map((id) => [id, cat(a.pValues[id], b.pValues[id])])),
    scoreMsPerInstance: (a.scoreMsPerInstance * a.meta.length + b.scoreMsPerInstance * b.meta.length) / Math.max(1, n),
  };
}

/** Scores every row of a dump with every detector of the bundle. */
export function scoreDump(bundle: FittedBundle, dump: FeatureDump): ScoredSet {
  const scores: Record<string, Float64Array> = {};
  const pValues: Record<string, Float64Array> = {};
  for (const id of bundle.names) {
    scores[id] = new Float64Array(dump.table.n);
    pValues[id] = new Float64Array(dump.table.n);
  }
  const t0 = performance.now();
  for (let i = 0; i < dump.table.n; i++) {
    const s = bundle.score(instanceOf(dump.table, i), dump.table.predicted[i]);
    for (const id of bundle.names) {
      scores[id][i] = s[id].score;
      pValues[id][i] = s[id].pValue;
    }
  }
  return { meta: dump.meta, scores, pValues, scoreMsPerInstance: (performance.now() - t0) / Math.max(1, dump.table.n) };
}

/** Builds the report rows from scored rows (pure; exported for tests). */
export function buildReport(set: ScoredSet, detectors: string[], cleanSplit: string, splitColumn: string): Pick<EvalReport, 'rows' | 'benign' | 'clean' | 'notes'> {
  const idx = (pred: (m: Record<string, string>) => boolean) => set.meta.flatMap((m, i) => (pred(m) ? [i] : []));
  const clean = idx((m) => (m.kind ?? 'clean') === 'clean' && m[splitColumn] === cleanSplit);
  const notes: string[] = [];
  if (clean.length === 0) throw new WardenError('USAGE', `No clean rows with ${splitColumn}=${cleanSplit} in the manifest: nothing to compare against.`);
  const pick = (a: Float64Array, ix: number[]) => ix.map((i) => a[i]);
  const adv = set.meta.map((m, i) => ({ m, i })).filter(({ m }) => m.kind === 'adversarial');
  const groups = new Map<string, { attack: string; eps: string; norm: string; all: number[]; ok: number[] }>();
  for (const { m, i } of adv) {
    const key = `${m.attack}|${m.eps}`;
    if (!groups.has(key)) groups.set(key, { attack: m.attack, eps: m.eps ?? '', norm: m.norm ?? '', all: [], ok: [] });
    const g = groups.get(key)!;
    g.all.push(i);
    if (truthy(m.success)) g.ok.push(i);
  }
  const rows: EvalRow[] = [];
  for (const g of groups.values()) {
    const mean = (col: string) => {
      const v = g.ok.map((i) => num(set.meta[i][col])).filter((x): x is number => x !== undefined);
      return v.length ? v.reduce((a, b) => a + b, 0) / v.length : undefined;
    };
    for (const d of detectors) {
      const pos = pick(set.scores[d], g.ok);
      const pp = pick(set.pValues[d], g.ok);
      rows.push({
        attack: g.attack, eps: g.eps, eps255: g.norm.toLowerCase() === 'l2' ? null : eps255(g.eps), norm: g.norm, detector: d, supervised: false, source: 'warden',
        n_adv: g.ok.length, n_attempted: g.all.length, n_clean: clean.length,
        auroc: g.ok.length ? auroc(pick(set.scores[d], clean), pos) : NaN,
        tpr_at_fpr_1: rateAtOrBelow(pp, 0.01), tpr_at_fpr_5: rateAtOrBelow(pp, 0.05),
        mean_linf: mean('linf'), mean_l2: mean('l2'),
      });
    }
    if (g.ok.length === 0) notes.push(`${g.attack} ε=${g.eps}: no successful adversarial example (${g.all.length} attempted).`);
  }
  const benign: BenignRow[] = [];
  const shifts = new Map<string, number[]>();
  set.meta.forEach((m, i) => {
    if (m.kind === 'benign') {
      const k = (m.attack || 'benign') + (m.severity ? ` s${m.severity}` : '');
      if (!shifts.has(k)) shifts.set(k, []);
      shifts.get(k)!.push(i);
    }
  });
  for (const [shift, ix] of shifts) {
    for (const d of detectors) {
      const p = pick(set.pValues[d], ix);
      benign.push({ shift, detector: d, supervised: false, source: 'warden', n: ix.length, flag_rate_5: rateAtOrBelow(p, 0.05), flag_rate_1: rateAtOrBelow(p, 0.01) });
    }
  }
  const cleanRows: CleanRow[] = detectors.map((d) => {
    const p = pick(set.pValues[d], clean);
    return { detector: d, supervised: false, source: 'warden', n: clean.length, flag_rate_5: rateAtOrBelow(p, 0.05), flag_rate_1: rateAtOrBelow(p, 0.01), flag_rate_05: rateAtOrBelow(p, 0.005) };
  });
  return { rows, benign, clean: cleanRows, notes };
}

/**
 * Images from other sources (e.g. every CR/DX radiograph of the shared DICOM corpus), scored as clean negatives of a
 * different origin: one item per distinct file content whose decoded Modality is one of `modalities`.
 */
export async function foreignItems(inputs: string[], modalities: string[]): Promise<InputItem[]> {
  const seen = new Set<string>();
  const items: InputItem[] = [];
  for (const input of inputs) {
    const files = fs.statSync(input).isDirectory() ? listFiles(input) : [input];
    for (const file of files) {
      const bytes = fs.readFileSync(file);
      const digest = createHash('sha256').update(bytes).digest('hex');
      if (seen.has(digest)) continue;
      let modality: string | undefined;
      try {
        const decoded = await decodeInstance(bytes);
        if (isSkipped(decoded)) continue;
        modality = decoded.modality;
      } catch {
        continue; // not an image Warden can decode: nothing to score
      }
      if (!modality || !modalities.includes(modality.toUpperCase())) continue;
      seen.add(digest);
      items.push({ absPath: path.resolve(file), meta: { file: path.relative(process.cwd(), file), kind: 'foreign', attack: 'foreign', modality } });
    }
  }
  return items;
}

export function register(program: Command): void {
  program
    .command('eval')
    .description('Evaluate a detector bundle on a lab manifest: report.md, report.json, scores.csv, ROC plots')
    .requiredOption('--bundle <file>', 'detector bundle')
    .requiredOption('--manifest <src>', 'lab manifest.csv, or a feature dump of it from `warden features`')
    .requiredOption('--out <dir>', 'output folder')
    .option('--model <file>', 'ONNX model (default: the embedded reference model)')
    .option('--baselines <json...>', 'rows computed by the lab (lab/detectors/baselines.py) to merge')
    .option('--adaptive <json>', "the lab's adaptive-attack report (lab/adaptive/report.py) to add as a section")
    .option('--clean-split <name>', 'split whose clean rows are the negatives', 'test')
    .option('--split-column <name>', 'manifest split column', 'split')
    .option('--foreign <paths...>', 'DICOM files or folders from other sources, scored as clean negatives (e.g. ../shared/corpus/dicom)')
    .option('--foreign-modalities <list>', 'modalities of the foreign files kept', 'CR,DX')
    .option('--config <file>', 'configuration whose policy is evaluated (default: the shipped policy)')
    .option('--workers <n>', 'inference worker threads', '1')
    .option('--threads <n>', 'ONNX Runtime threads per worker', '1')
    .action(async (opts: EvalCliOptions) => {
      const modelPath = path.resolve(opts.model ?? DEFAULT_MODEL_PATH);
      const adaptive = opts.adaptive ? readAdaptiveReport(opts.adaptive) : undefined; // a bad file fails before the long run
      const spec = parseSourceSpec(opts.manifest);
      const keep = (m: Record<string, string>) => m.kind === 'adversarial' || m.kind === 'benign' || ((m.kind ?? 'clean') === 'clean' && m[opts.splitColumn] === opts.cleanSplit);
      let dump: FeatureDump;
      const t0 = performance.now();
      if (spec.kind === 'features') {
        const full = readFeatureDump(spec.path);
        const ix = full.meta.flatMap((m, i) => (keep(m) ? [i] : []));
        dump = selectDump(full, ix);
      } else {
        const items = itemsOf(spec, opts.splitColumn).filter((it) => keep(it.meta));
        // the views the bundle's detectors read are run with each image
        const views = viewsOf(readBundleFile(opts.bundle).detectors.flatMap((d) => Object.keys(d.state.layers)));
        const runtime = await cliRuntime({ ...opts, model: modelPath }, { ...EXTRACT_ONLY, views });
        try {
          dump = await extractFeatures(runtime.pipeline, items, { label: 'eval' });
        } finally {
          await runtime.close();
        }
      }
      const modelSha256 = spec.kind === 'features' ? dump.header.modelSha256 : sha256File(modelPath);
      const bundle = (await loadBundle(opts.bundle, modelSha256)) as FittedBundle;
      let set = scoreDump(bundle, dump);
      if (opts.foreign?.length) {
        const items = await foreignItems(opts.foreign, opts.foreignModalities.split(',').map((s) => s.trim().toUpperCase()).filter(Boolean));
        if (!items.length) throw new WardenError('USAGE', `No ${opts.foreignModalities} image among ${opts.foreign.join(', ')}.`);
        const views = viewsOf(readBundleFile(opts.bundle).detectors.flatMap((d) => Object.keys(d.state.layers)));
        const runtime = await cliRuntime({ ...opts, model: modelPath }, { ...EXTRACT_ONLY, views });
        try {
          set = concatScored(set, scoreDump(bundle, await extractFeatures(runtime.pipeline, items, { label: 'foreign' })));
        } finally {
          await runtime.close();
        }
      }
      const extractS = (performance.now() - t0) / 1000;
      const detectors = bundle.names;
      const body = buildReport(set, detectors, opts.cleanSplit, opts.splitColumn);
      const policy = loadRuntimeConfig(opts.config).policy;
      const report: EvalReport = {
        createdAt: new Date().toISOString(), bundle: opts.bundle, modelSha256, manifest: opts.manifest, ...body,
        policy: evaluatePolicy(set, policy, opts.cleanSplit, opts.splitColumn),
        timing: { extract_s: extractS, detect_ms_per_instance: set.scoreMsPerInstance },
        ...(adaptive ? { adaptive } : {}),
      };
      for (const file of opts.baselines ?? []) {
        const b = JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<EvalReport>;
        report.rows.push(...(b.rows ?? []).map((r) => ({ ...r, eps255: (r.norm ?? '').toLowerCase() === 'l2' ? null : eps255(r.eps), source: 'lab' as const })));
        report.benign.push(...(b.benign ?? []).map((r) => ({ ...r, source: 'lab' as const })));
        report.clean.push(...(b.clean ?? []).map((r) => ({ ...r, source: 'lab' as const })));
        report.notes.push(...(b.notes ?? []));
      }
      report.notes.push(`Detector scoring (all ${detectors.length} detectors) took ${set.scoreMsPerInstance.toFixed(3)} ms per instance on this machine.`);
      fs.mkdirSync(path.join(opts.out, 'roc'), { recursive: true });
      // ROC plots for Warden's detectors
      const clean = set.meta.flatMap((m, i) => ((m.kind ?? 'clean') === 'clean' && m[opts.splitColumn] === opts.cleanSplit ? [i] : []));
      for (const k of groupKeys(report.rows.filter((r) => r.source === 'warden'))) {
        const ok = set.meta.flatMap((m, i) => (m.kind === 'adversarial' && m.attack === k.attack && m.eps === k.eps && truthy(m.success) ? [i] : []));
        if (!ok.length) continue;
        const curves = detectors.map((d) => {
          const neg = clean.map((i) => set.scores[d][i]);
          const pos = ok.map((i) => set.scores[d][i]);
          return { name: d, points: rocCurve(neg, pos), auroc: auroc(neg, pos) };
        });
        const r0 = report.rows.find((r) => r.attack === k.attack && r.eps === k.eps)!;
        const file = `${k.attack}_${(k.eps || 'na').replace(/[^0-9A-Za-z.]+/g, '_')}.svg`.replace(/[^0-9A-Za-z._-]/g, '_');
        fs.writeFileSync(path.join(opts.out, 'roc', file), rocSvg(`${k.attack} ε=${epsLabel(r0)} (n_adv=${ok.length}, n_clean=${clean.length})`, curves));
      }
      const scoreRows = set.meta.map((m, i) => {
        const r: Record<string, unknown> = { file: m.file, kind: m.kind, split: m[opts.splitColumn], attack: m.attack, eps: m.eps, severity: m.severity, success: m.success };
        for (const d of detectors) {
          r[`${d}_score`] = set.scores[d][i];
          r[`${d}_p`] = set.pValues[d][i];
        }
        return r;
      });
      fs.writeFileSync(path.join(opts.out, 'scores.csv'), toCsv(scoreRows));
      fs.writeFileSync(path.join(opts.out, 'report.json'), JSON.stringify(report, null, 2) + '\n');
      fs.writeFileSync(path.join(opts.out, 'report.md'), renderMarkdown(report, [...(report.policy ? renderPolicyMarkdown(report.policy) : []), ...(adaptive ? renderAdaptiveMarkdown(adaptive) : [])]));
      process.stderr.write(`wrote ${path.join(opts.out, 'report.md')} (${report.rows.length} rows)\n`);
    });
}
