/**
 * The report of `warden calibrate`: how the site's clean instances look to the shipped calibration, and what the new
 * calibration promises. Pure functions (the CLI writes the files):
 * - per detector: the site's scores (under the shipped detector) against the shipped calibration scores — a small
 *   SVG histogram, a two-sample Kolmogorov–Smirnov test — and the share of site instances at or below each policy
 *   threshold under the shipped calibration;
 * - per policy signal: the flag (and block) rate the shipped calibration would give the site's clean instances,
 *   against the nominal rate after recalibration (conformal: at most the threshold, for instances like the site's);
 * - warnings: thresholds the new calibration cannot reach (p-value floor 1/(n+1), unreachableThresholds), thresholds
 *   resting on few calibration scores, a shipped rate above twice the nominal one, distributions that differ.
 * Never a UID: the sample is described by counts only.
 */

import { type Detector, type FeatureTable, scoreTable } from '../detectors';
import { combinePValues, formatP, unreachableThresholds, type Policy, type SignalPolicy } from '../policy';

/** Significance level of the two-sample test that says "the site's scores differ from the shipped calibration". */
export const DISTRIBUTION_TEST_LEVEL = 0.001;
/** A threshold resting on fewer calibration scores beyond it than this gets a warning (its realised rate scatters). */
export const MIN_SCORES_BEYOND_THRESHOLD = 10;

export interface KsResult {
  /** Largest distance between the two empirical distribution functions. */
  d: number;
  /** Asymptotic p-value (Kolmogorov distribution with the Stephens small-sample correction). */
  p: number;
}

/** Two-sample Kolmogorov–Smirnov test. */
export function ksTwoSample(a: ArrayLike<number>, b: ArrayLike<number>): KsResult {
  const x = Float64Array.from(a).sort();
  const y = Float64Array.from(b).sort();
  const n = x.length;
  const m = y.length;
  if (n === 0 || m === 0) return { d: 0, p: 1 };
  let i = 0;
  let j = 0;
  let d = 0;
  while (i < n && j < m) {
    const v = Math.min(x[i], y[j]);
    while (i < n && x[i] <= v) i++;
    while (j < m && y[j] <= v) j++;
    d = Math.max(d, Math.abs(i / n - j / m));
  }
  const ne = Math.sqrt((n * m) / (n + m));
  return { d, p: kolmogorovSf((ne + 0.12 + 0.11 / ne) * d) };
}

/** P[K > λ] for the Kolmogorov distribution: 2 Σ (−1)^(k−1) exp(−2k²λ²). */
function kolmogorovSf(lambda: number): number {
  if (lambda < 1e-3) return 1;
  let sum = 0;
  let sign = 1;
  for (let k = 1; k <= 100; k++) {
    const term = sign * Math.exp(-2 * k * k * lambda * lambda);
    sum += term;
    if (Math.abs(term) < 1e-12 * Math.abs(sum) || Math.abs(term) < 1e-300) break;
    sign = -sign;
  }
  return Math.min(1, Math.max(0, 2 * sum));
}

export interface SiteReportInput {
  policy: Policy;
  /** Class labels of the model, by index. */
  classes: string[];
  /** The site's clean features (every instance calibrate used). */
  site: FeatureTable;
  /** The shipped (fitted and calibrated) detectors, by id. */
  shipped: Record<string, Detector>;
  /** The shipped calibration scores, by detector id (what the shipped p-values are taken against). */
  shippedCalibration: Record<string, ArrayLike<number>>;
  /** The recalibrated (or refitted) detectors, by id. */
  recalibrated: Record<string, Detector>;
  /** Detector ids that were refitted on site data (their new scores are on another scale). */
  refitted: string[];
  /** Per detector: the number of site instances its new calibration was computed on. */
  calibratedOn: Record<string, number>;
  /** What the report describes (counts and names only). */
  about: { source: string; bundleIn: string; bundleOut: string; modelSha256: string; studies?: number; skipped?: Record<string, number>; createdAt?: string; shippedCalibration?: { n: number; source?: string } };
}

export interface DetectorSiteRow {
  id: string;
  signal: string;
  refitted: boolean;
  shippedN: number;
  siteN: number;
  /** Site instances the new calibration was computed on. */
  calibratedOn: number;
  /** Calibration scores the new p-values are taken against (fewer than calibratedOn when the detector keeps a share, as UAD does). */
  newN: number;
  ks: KsResult;
  /** Share of the site's clean instances with a shipped p-value at or below each policy threshold (key: the threshold). */
  shippedRates: Record<string, number>;
  /** Median site score and median shipped calibration score (shipped scale). */
  medians: { site: number; shipped: number };
}

export interface SignalSiteRow {
  signal: 'adversarial' | 'domain';
  decideBy: string[];
  combine: string;
  flagFpr: number;
  blockFpr?: number;
  /** Rates the shipped calibration gives the site's clean instances. */
  shipped: { flag: number; block?: number };
  /** After recalibration: at most the thresholds, for clean instances exchangeable with the site sample. */
  nominal: { flag: number; block?: number };
}

export interface SiteWarning {
  code: 'threshold_unreachable' | 'few_scores_beyond_threshold' | 'shipped_rate_high' | 'shipped_rate_low' | 'distribution_differs' | 'signal_off';
  message: string;
}

export interface SiteReport {
  format: 'warden-calibration-report';
  version: 1;
  createdAt: string;
  about: SiteReportInput['about'];
  n: number;
  thresholds: number[];
  signals: SignalSiteRow[];
  detectors: DetectorSiteRow[];
  warnings: SiteWarning[];
}

const median = (v: ArrayLike<number>): number => {
  const s = Float64Array.from(v).sort();
  if (s.length === 0) return NaN;
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const pct = (x: number | undefined): string => (x === undefined || Number.isNaN(x) ? '–' : `${(100 * x).toFixed(1)} %`);

/**
 * Every number the report shows, computed from the shipped and recalibrated detectors on the site's features, and one
 * plot per detector (SVG text by detector id; the shipped threshold drawn is at the smallest flag threshold).
 */
export function siteReport(input: SiteReportInput): { report: SiteReport; plots: Record<string, string> } {
  const { policy, site } = input;
  const ids = Object.keys(input.shipped);
  const thresholds = [...new Set([policy.adversarial.flagFpr, policy.adversarial.blockFpr, policy.domain.flagFpr])].sort((a, b) => b - a);
  // per detector and instance: the site score and its p-value under the shipped calibration
  const shippedP: Record<string, Float64Array> = {};
  const plots: Record<string, string> = {};
  // each plot marks the shipped threshold at the flag level of the signal the detector decides (else the smallest)
  const plotFpr = (id: string) => (policy.adversarial.decideBy.includes(id) ? policy.adversarial.flagFpr
    : policy.domain.decideBy.includes(id) ? policy.domain.flagFpr : Math.min(policy.adversarial.flagFpr, policy.domain.flagFpr));
  const detectors: DetectorSiteRow[] = ids.map((id) => {
    const d = input.shipped[id];
    const scores = scoreTable(d, site);
    const p = new Float64Array(site.n);
    for (let i = 0; i < site.n; i++) p[i] = d.pValue(scores[i], site.predicted[i]);
    shippedP[id] = p;
    const cal = input.shippedCalibration[id];
    plots[id] = scoreDistributionSvg(id, cal, scores, { fpr: plotFpr(id), score: d.threshold(plotFpr(id)) });
    return {
      id,
      signal: d.signal,
      refitted: input.refitted.includes(id),
      shippedN: cal.length,
      siteN: site.n,
      calibratedOn: input.calibratedOn[id] ?? site.n,
      newN: Math.round(1 / input.recalibrated[id].pValueFloor()) - 1,
      ks: ksTwoSample(scores, cal),
      shippedRates: Object.fromEntries(thresholds.map((t) => [String(t), p.filter((x) => x <= t).length / site.n])),
      medians: { site: median(scores), shipped: median(cal) },
    };
  });

  const signals: SignalSiteRow[] = [];
  const warnings: SiteWarning[] = [];
  const signalRow = (signal: 'adversarial' | 'domain', s: SignalPolicy, blockFpr?: number): void => {
    const used = s.decideBy.filter((id) => shippedP[id]);
    if (used.length === 0) {
      if (s.decideBy.length) warnings.push({ code: 'signal_off', message: `policy.${signal}.decideBy names ${s.decideBy.join(', ')}, none of which is in the bundle: the ${signal} signal is off.` });
      return;
    }
    const combined = Array.from({ length: site.n }, (_, i) => combinePValues(used.map((id) => shippedP[id][i]), s.combine));
    const rate = (t: number) => combined.filter((p) => p <= t).length / site.n;
    const row: SignalSiteRow = {
      signal, decideBy: used, combine: s.combine, flagFpr: s.flagFpr,
      shipped: { flag: rate(s.flagFpr), ...(blockFpr !== undefined ? { block: rate(blockFpr) } : {}) },
      nominal: { flag: s.flagFpr, ...(blockFpr !== undefined ? { block: blockFpr } : {}) },
      ...(blockFpr !== undefined ? { blockFpr } : {}),
    };
    signals.push(row);
    for (const [what, key, nominal, observed] of [['flag', 'flagFpr', s.flagFpr, row.shipped.flag], ['block', 'blockFpr', blockFpr, row.shipped.block]] as const) {
      if (nominal === undefined || observed === undefined) continue;
      if (observed > 2 * nominal) {
        warnings.push({ code: 'shipped_rate_high', message: `The shipped calibration would ${what} ${pct(observed)} of the site's clean instances at policy.${signal}.${key} ${nominal} ` +
          `(${(observed / nominal).toFixed(1)} × nominal): the site's images differ strongly from the data the bundle was calibrated on. Use the recalibrated bundle, and look at the plots for the detectors that moved.` });
      } else if (what === 'flag' && nominal * site.n >= MIN_SCORES_BEYOND_THRESHOLD && observed < 0.5 * nominal) {
        warnings.push({ code: 'shipped_rate_low', message: `The shipped calibration would ${what} only ${pct(observed)} of the site's clean instances at policy.${signal}.${key} ${nominal}: ` +
          'the site looks more typical than the calibration set; the recalibrated bundle is more sensitive.' });
      }
    }
  };
  signalRow('adversarial', policy.adversarial, policy.adversarial.blockFpr);
  signalRow('domain', policy.domain);

  // the new calibration: thresholds it cannot reach, and thresholds resting on few scores
  const floors = Object.fromEntries(input.classes.map((label, c) => [label, Object.fromEntries(ids.map((id) => [id, input.recalibrated[id].pValueFloor(c)]))]));
  for (const problem of unreachableThresholds(policy, floors)) warnings.push({ code: 'threshold_unreachable', message: `${problem} (Here: calibrate on more of the site's studies.)` });
  for (const row of signals) {
    const s = row.signal === 'adversarial' ? policy.adversarial : policy.domain;
    const levels: [string, number][] = [[`${row.signal}.flagFpr`, row.flagFpr], ...(row.blockFpr !== undefined ? [[`${row.signal}.blockFpr`, row.blockFpr] as [string, number]] : [])];
    for (const [key, level] of levels) {
      // the level each detector must reach for the combined p-value to reach `level`
      const perDetector = s.combine === 'bonferroni' ? level / row.decideBy.length : level / 2;
      for (const id of row.decideBy) {
        const d = input.recalibrated[id];
        const byClass = d.params.calibrateBy === 'class';
        const n = Math.min(...input.classes.map((_, c) => Math.round(1 / d.pValueFloor(c)) - 1));
        const beyond = Math.floor(perDetector * (n + 1));
        if (beyond >= 1 && beyond < MIN_SCORES_BEYOND_THRESHOLD) {
          const needed = Math.ceil(MIN_SCORES_BEYOND_THRESHOLD / perDetector);
          // UAD keeps part of its calibration instances for its per-layer step: more site instances than scores are needed
          const kept = (Math.round(1 / d.pValueFloor()) - 1) / (input.calibratedOn[id] ?? site.n);
          warnings.push({ code: 'few_scores_beyond_threshold', message: `policy.${key} ${level}: ${id}'s new threshold rests on ${beyond} of its ${n} calibration scores` +
            `${byClass ? ' (of the smallest predicted class; it is calibrated per class)' : ''}${s.combine === 'bonferroni' && row.decideBy.length > 1 ? ` (Bonferroni over ${row.decideBy.length})` : ''}; ` +
            `the realised clean rate will scatter around the nominal one (relative spread about ±${Math.round(100 / Math.sqrt(beyond))} %). Calibrate on more studies: ` +
            `about ${needed} calibration scores${byClass ? ' in each predicted class' : ''}${kept < 0.99 ? ` (${id} calibrates on ${Math.round(kept * 100)} % of the site instances: about ${Math.ceil(needed / kept)} instances)` : ''}.` });
        }
      }
    }
  }
  for (const row of detectors) {
    if (row.ks.p < DISTRIBUTION_TEST_LEVEL) {
      warnings.push({ code: 'distribution_differs', message: `${row.id}: the site's scores differ from the shipped calibration scores (two-sample Kolmogorov–Smirnov D = ${row.ks.d.toFixed(3)}, ` +
        `p = ${formatP(row.ks.p)} < ${DISTRIBUTION_TEST_LEVEL}; median ${fmt(row.medians.site)} against ${fmt(row.medians.shipped)}).` });
    }
  }
  const report: SiteReport = { format: 'warden-calibration-report', version: 1, createdAt: input.about.createdAt ?? new Date().toISOString(), about: input.about, n: site.n, thresholds, signals, detectors, warnings };
  return { report, plots };
}

function fmt(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  const a = Math.abs(x);
  return a !== 0 && (a >= 1e4 || a < 1e-3) ? x.toExponential(2) : x.toFixed(a >= 100 ? 0 : a >= 10 ? 1 : 3);
}

/**
 * The site's scores against the shipped calibration scores as one small SVG: two outlined histograms on shared bins
 * (the axis spans the 0.5–99.5 % quantiles of both; scores beyond fall into the edge bins) and the shipped score
 * threshold at `fpr` as a dashed line.
 */
export function scoreDistributionSvg(id: string, shippedCalibration: ArrayLike<number>, site: ArrayLike<number>, threshold?: { fpr: number; score: number }): string {
  const W = 360;
  const H = 120;
  const m = { l: 8, r: 8, t: 18, b: 26 };
  const bins = 40;
  const a = Float64Array.from(shippedCalibration).filter(Number.isFinite).sort();
  const b = Float64Array.from(site).filter(Number.isFinite).sort();
  const q = (s: Float64Array, f: number) => s[Math.min(s.length - 1, Math.max(0, Math.floor(f * (s.length - 1))))];
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/"/g, '&quot;');
  const title = `${id}: site scores (n = ${b.length}) against the shipped calibration (n = ${a.length})`;
  if (a.length === 0 || b.length === 0) {
    return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" role="img" aria-label="${esc(title)}"><title>${esc(title)}</title><text x="8" y="60" font-size="11">no scores</text></svg>\n`;
  }
  let lo = Math.min(q(a, 0.005), q(b, 0.005));
  let hi = Math.max(q(a, 0.995), q(b, 0.995));
  if (threshold && Number.isFinite(threshold.score)) { lo = Math.min(lo, threshold.score); hi = Math.max(hi, threshold.score); }
  if (!(hi > lo)) { lo -= 0.5; hi += 0.5; }
  const histogram = (s: Float64Array) => {
    const c = new Array<number>(bins).fill(0);
    for (const v of s) c[Math.min(bins - 1, Math.max(0, Math.floor(((v - lo) / (hi - lo)) * bins)))]++;
    return c.map((k) => k / s.length);
  };
  const ha = histogram(a);
  const hb = histogram(b);
  const top = Math.max(...ha, ...hb) || 1;
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  const X = (v: number) => (m.l + ((v - lo) / (hi - lo)) * pw).toFixed(1);
  const step = (h: number[]) => {
    const pts: string[] = [`${m.l},${m.t + ph}`];
    h.forEach((f, i) => {
      const y = (m.t + ph - (f / top) * ph).toFixed(1);
      pts.push(`${(m.l + (i / bins) * pw).toFixed(1)},${y}`, `${(m.l + ((i + 1) / bins) * pw).toFixed(1)},${y}`);
    });
    pts.push(`${m.l + pw},${m.t + ph}`);
    return pts.join(' ');
  };
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="10" role="img" aria-label="${esc(title)}">`,
    `<title>${esc(title)}</title>`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<polygon points="${step(ha)}" fill="#9aa5b1" fill-opacity="0.45" stroke="#52606d" stroke-width="1"/>`,
    `<polyline points="${step(hb)}" fill="none" stroke="#1f6feb" stroke-width="1.6"/>`,
    `<line x1="${m.l}" y1="${m.t + ph}" x2="${m.l + pw}" y2="${m.t + ph}" stroke="#333"/>`,
    `<text x="${m.l}" y="${H - 12}">${esc(fmt(lo))}</text>`,
    `<text x="${m.l + pw}" y="${H - 12}" text-anchor="end">${esc(fmt(hi))}</text>`,
    `<text x="${m.l + pw / 2}" y="${H - 2}" text-anchor="middle">${esc(`${id} score (higher = more anomalous)`)}</text>`,
    `<rect x="${m.l}" y="4" width="10" height="8" fill="#9aa5b1" fill-opacity="0.45" stroke="#52606d"/><text x="${m.l + 14}" y="12">shipped calibration (${a.length})</text>`,
    `<line x1="${m.l + 160}" y1="8" x2="${m.l + 172}" y2="8" stroke="#1f6feb" stroke-width="1.6"/><text x="${m.l + 176}" y="12">site (${b.length})</text>`,
  ];
  if (threshold && Number.isFinite(threshold.score)) {
    parts.push(`<line x1="${X(threshold.score)}" y1="${m.t}" x2="${X(threshold.score)}" y2="${m.t + ph}" stroke="#c0392b" stroke-dasharray="3,2"/>`,
      `<text x="${X(threshold.score)}" y="${m.t + 9}" fill="#c0392b" text-anchor="${Number(X(threshold.score)) > W * 0.7 ? 'end' : 'start'}" dx="${Number(X(threshold.score)) > W * 0.7 ? -3 : 3}">shipped p ≤ ${threshold.fpr}</text>`);
  }
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}

/** report.md: what a site's security team reads before switching to enforce. */
export function renderSiteReportMarkdown(r: SiteReport, plots: Record<string, string> = {}): string {
  const L: string[] = [];
  const a = r.about;
  L.push('# Site calibration report', '');
  L.push(`- source: ${a.source}`);
  L.push(`- site sample: ${r.n} clean instances${a.studies !== undefined ? ` from ${a.studies} studies` : ''}` +
    `${a.skipped && Object.keys(a.skipped).length ? `; left out: ${Object.entries(a.skipped).map(([why, k]) => `${k} × ${why}`).join(', ')}` : ''}`);
  L.push(`- bundle in: ${a.bundleIn}${a.shippedCalibration ? ` (calibrated on ${a.shippedCalibration.n} instances${a.shippedCalibration.source ? ` of ${a.shippedCalibration.source}` : ''})` : ''}`);
  L.push(`- bundle out: ${a.bundleOut}, bound to model sha256 ${a.modelSha256.slice(0, 12)}…`);
  L.push(`- created: ${r.createdAt}`, '');
  L.push('## Warnings', '');
  if (r.warnings.length === 0) L.push('None.');
  for (const w of r.warnings) L.push(`- **${w.code}**: ${w.message}`);
  L.push('', '## Expected rates at the policy thresholds', '');
  L.push('Share of the site\'s clean instances the *shipped* calibration would flag or block, against the nominal rate of the recalibrated bundle ' +
    '(conformal: at most the threshold for clean instances like the site sample).', '');
  L.push('| signal | decided by | threshold | shipped calibration | after recalibration (nominal) |', '|---|---|---|---|---|');
  for (const s of r.signals) {
    L.push(`| ${s.signal} (flag) | ${s.decideBy.join(s.combine === 'bonferroni' ? ' + ' : ', ')} | p ≤ ${s.flagFpr} | ${pct(s.shipped.flag)} | ≤ ${pct(s.nominal.flag)} |`);
    if (s.blockFpr !== undefined) L.push(`| ${s.signal} (block) | ${s.decideBy.join(' + ')} | p ≤ ${s.blockFpr} | ${pct(s.shipped.block)} | ≤ ${pct(s.nominal.block)} |`);
  }
  if (r.signals.length === 0) L.push('| – | no detector of the bundle decides a signal | | | |');
  L.push('', '## Per detector', '');
  L.push(`Site scores under the shipped detector against its calibration scores; two-sample Kolmogorov–Smirnov test at level ${DISTRIBUTION_TEST_LEVEL}.`, '');
  L.push(`| detector | signal | shipped calibration scores | site instances calibrated on | new calibration scores | KS D | KS p | ${r.thresholds.map((t) => `shipped p ≤ ${t}`).join(' | ')} |`);
  L.push(`|---|---|---|---|---|---|---|${r.thresholds.map(() => '---|').join('')}`);
  for (const d of r.detectors) {
    L.push(`| ${d.id}${d.refitted ? ' (refitted)' : ''} | ${d.signal} | ${d.shippedN} | ${d.calibratedOn} | ${d.newN} | ${d.ks.d.toFixed(3)} | ${formatP(d.ks.p)} | ${r.thresholds.map((t) => pct(d.shippedRates[String(t)])).join(' | ')} |`);
  }
  L.push('');
  for (const d of r.detectors) if (plots[d.id]) L.push(`![${d.id}: site scores against the shipped calibration](${plots[d.id]})`);
  L.push('');
  return L.join('\n');
}
