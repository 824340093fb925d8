import * as fs from 'node:fs';
import { WardenError } from '../core/errors';

/**
 * The adaptive-attack section of `warden eval` (issue 17): the lab's report of attacks that know the shipped
 * detectors (lab/adaptive/report.py writes report.json; `warden eval --adaptive <file>` merges it). Warden does not
 * run the attacks (they need torch); it carries the lab's measured rows beside its own non-adaptive ones, so one
 * report says both what the detectors catch and what an attacker who knows them gets through.
 */

export interface AdaptiveRow {
  kind: string;
  eps: number;
  steps: number;
  restarts: number;
  n: number;
  flipped: number;
  caught5: number;
  caught05: number;
  success5: number;
  success05: number;
  success_silent: number;
  mean_l2: number | null;
  /** Warden's own counts on the examples written as DICOM, where they came back from the lab run. */
  warden?: { n: number; flipped: number; caught5: number; caught05: number; domain: number };
}

/** [eps, success rate, mean L2, kind?, steps?] at the first eps of the grid reaching 90 % success, or null. */
type L2Hit = [number, number, number, ...unknown[]] | null;

export interface AdaptiveReport {
  source: string;
  device: string;
  n: number;
  strongest: string;
  rows: AdaptiveRow[];
  baseline: { eps: number; steps: number; success: number; caught5: number; mean_l2: number | null }[];
  l2_for_90: { model_alone: L2Hit; warden_5: L2Hit; warden_05: L2Hit };
}

const ROW_NUMBERS = ['eps', 'steps', 'restarts', 'n', 'flipped', 'caught5', 'caught05', 'success5', 'success05', 'success_silent'] as const;

/** Reads and checks the lab's adaptive report; a file that is not one is a USAGE error naming what is wrong. */
export function readAdaptiveReport(file: string): AdaptiveReport {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new WardenError('USAGE', `--adaptive ${file}: not a readable JSON file (${(e as Error).message}).`);
  }
  const bad = (what: string) => new WardenError('USAGE', `--adaptive ${file}: not an adaptive-attack report of lab/adaptive/report.py (${what}).`);
  const r = raw as Partial<AdaptiveReport>;
  if (!r || typeof r !== 'object' || !Array.isArray(r.rows) || !Array.isArray(r.baseline) || typeof r.l2_for_90 !== 'object' || r.l2_for_90 === null) {
    throw bad('rows, baseline or l2_for_90 missing');
  }
  r.rows.forEach((row, i) => {
    if (typeof row?.kind !== 'string') throw bad(`row ${i} has no attack kind`);
    for (const k of ROW_NUMBERS) if (!Number.isFinite(row[k])) throw bad(`row ${i} has no number ${k}`);
    if (row.caught5 > row.flipped || row.success5 > row.n) throw bad(`row ${i} counts more caught or successful examples than it has`);
  });
  if (!Number.isFinite(r.n)) throw bad('n missing');
  for (const k of ['model_alone', 'warden_5', 'warden_05'] as const) {
    const h = (r.l2_for_90 as Record<string, unknown>)[k];
    if (h !== null && !(Array.isArray(h) && h.length >= 3 && h.slice(0, 3).every((v) => Number.isFinite(v)))) throw bad(`l2_for_90.${k} is neither null nor [eps, rate, L2, …]`);
  }
  return { source: String(r.source ?? file), device: String(r.device ?? '?'), strongest: String(r.strongest ?? ''), ...r } as AdaptiveReport;
}

const pct = (a: number, b: number) => (b > 0 ? `${((100 * a) / b).toFixed(1)} %` : '–');

/** Markdown lines of the section. */
export function renderAdaptiveMarkdown(rep: AdaptiveReport): string[] {
  const L: string[] = [];
  L.push('## Adaptive attacks (lab: attacks that know the shipped detectors)', '');
  L.push(`From \`${rep.source}\` (${rep.n} test images, run on ${rep.device}; docs/adaptive.md). Success = the 8-bit image fools the model and passes the ` +
    'operating point (5 %: not flagged by the adversarial signal; 0.5 %: not blocked). Caught = share of the model-fooling examples the adversarial signal still flags / blocks.', '');
  L.push('| attack | ε | steps × restarts | fools the model | success at 5 % / 0.5 % | caught at 5 % | caught at 0.5 % | Warden on the DICOM: fooled / caught / blocked |', '|---|---|---|---|---|---|---|---|');
  for (const r of [...rep.rows].sort((a, b) => a.eps - b.eps || a.kind.localeCompare(b.kind))) {
    const w = r.warden ? `${r.warden.flipped} / ${r.warden.caught5} / ${r.warden.caught05}` : '(twins only)';
    L.push(`| ${r.kind} | ${r.eps}/255 | ${r.steps} × ${r.restarts} | ${r.flipped} / ${r.n} | ${pct(r.success5, r.n)} / ${pct(r.success05, r.n)} | ${pct(r.caught5, r.flipped)} | ${pct(r.caught05, r.flipped)} | ${w} |`);
  }
  const hit = (h: L2Hit) => (h ? `ε ${h[0]}/255, ${(100 * h[1]).toFixed(1)} % success, mean L2 ${h[2].toFixed(2)}` : 'not reached on the grid');
  const a = rep.l2_for_90.model_alone;
  const w5 = rep.l2_for_90.warden_5;
  L.push('', 'L2 for 90 % success (smallest ε of the grid reaching it): ' +
    `model alone (non-adaptive PGD) ${hit(a)}; model + Warden at 5 % ${hit(w5)}; at 0.5 % ${hit(rep.l2_for_90.warden_05)}` +
    (a && w5 ? ` (ratio ${(w5[2] / a[2]).toFixed(2)}×).` : '.'), '');
  return L;
}
