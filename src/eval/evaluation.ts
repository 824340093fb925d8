import type { AdaptiveReport } from './adaptive';
import type { PolicyEvaluation } from './policy-eval';

/**
 * Evaluation maths and report rendering for `warden eval` (pure functions; the CLI does the IO).
 *
 * Honest-evaluation rules encoded here: adversarial examples count only when successful after uint8 rounding
 * (manifest `success`); negatives are clean TEST images; operating points come from the bundle's clean
 * CALIBRATION scores (p-value ≤ 1 % / 5 %), never from test scores; AUROC is threshold-free.
 */

export interface EvalRow {
  attack: string;
  eps: string;
  /** ε as a number in 8-bit units /255 when parseable (for sorting), else null. */
  eps255: number | null;
  norm: string;
  detector: string;
  supervised: boolean;
  source: 'warden' | 'lab';
  n_adv: number;
  n_attempted: number;
  n_clean: number;
  auroc: number;
  tpr_at_fpr_1: number;
  tpr_at_fpr_5: number;
  mean_linf?: number;
  mean_l2?: number;
}

export interface BenignRow {
  shift: string;
  detector: string;
  supervised: boolean;
  source: 'warden' | 'lab';
  n: number;
  flag_rate_5: number;
  flag_rate_1: number;
}

export interface CleanRow {
  detector: string;
  supervised: boolean;
  source: 'warden' | 'lab';
  n: number;
  flag_rate_5: number;
  flag_rate_1: number;
  flag_rate_05: number;
}

export interface EvalReport {
  createdAt: string;
  bundle?: string;
  modelSha256?: string;
  manifest?: string;
  rows: EvalRow[];
  benign: BenignRow[];
  clean: CleanRow[];
  notes: string[];
  timing?: Record<string, number>;
  /** The shipped (or configured) policy measured as a whole (policy-eval.ts). */
  policy?: PolicyEvaluation;
  /** The lab's adaptive-attack report, merged by `--adaptive` (adaptive.ts). */
  adaptive?: AdaptiveReport;
}

/** AUROC by the Mann–Whitney statistic with ties counted ½; neg/pos are scores (higher = positive). */
export function auroc(neg: ArrayLike<number>, pos: ArrayLike<number>): number {
  const n0 = neg.length;
  const n1 = pos.length;
  if (n0 === 0 || n1 === 0) return NaN;
  const all = new Float64Array(n0 + n1);
  const lab = new Uint8Array(n0 + n1);
  for (let i = 0; i < n0; i++) all[i] = neg[i];
  for (let i = 0; i < n1; i++) {
    all[n0 + i] = pos[i];
    lab[n0 + i] = 1;
  }
  const order = Array.from({ length: n0 + n1 }, (_, i) => i).sort((a, b) => all[a] - all[b]);
  let rankSumPos = 0;
  let i = 0;
  while (i < order.length) {
    let j = i;
    while (j + 1 < order.length && all[order[j + 1]] === all[order[i]]) j++;
    const avgRank = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++) if (lab[order[k]]) rankSumPos += avgRank;
    i = j + 1;
  }
  return (rankSumPos - (n1 * (n1 + 1)) / 2) / (n0 * n1);
}

/** Fraction of p-values at or below a level. */
export function rateAtOrBelow(p: ArrayLike<number>, level: number): number {
  if (p.length === 0) return NaN;
  let c = 0;
  for (let i = 0; i < p.length; i++) if (p[i] <= level) c++;
  return c / p.length;
}

/** ROC points (fpr, tpr), at most `maxPoints`, from negative / positive scores. */
export function rocCurve(neg: ArrayLike<number>, pos: ArrayLike<number>, maxPoints = 300): [number, number][] {
  const thr = Float64Array.from([...Array.from(neg), ...Array.from(pos)]).sort().reverse();
  const sn = Float64Array.from(neg).sort();
  const sp = Float64Array.from(pos).sort();
  const countGe = (a: Float64Array, t: number) => {
    let lo = 0;
    let hi = a.length;
    while (lo < hi) {
      const m = (lo + hi) >>> 1;
      if (a[m] < t) lo = m + 1;
      else hi = m;
    }
    return a.length - lo;
  };
  const pts: [number, number][] = [[0, 0]];
  const step = Math.max(1, Math.floor(thr.length / maxPoints));
  for (let i = 0; i < thr.length; i += step) pts.push([countGe(sn, thr[i]) / sn.length, countGe(sp, thr[i]) / sp.length]);
  pts.push([1, 1]);
  return pts;
}

/** Parses '2/255', '0.00784', '8' (already /255 when > 1) into units of 1/255; null when not numeric. */
export function eps255(eps: string): number | null {
  const s = eps.trim();
  if (!s) return null;
  const m = /^([\d.]+)\s*\/\s*255$/.exec(s);
  if (m) return Number(m[1]);
  const v = Number(s);
  if (!Number.isFinite(v)) return null;
  return v < 1 ? Math.round(v * 255 * 1000) / 1000 : v;
}

const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#17becf', '#7f7f7f', '#bcbd22'];

/** A hand-written SVG ROC plot (linear axes), one polyline per detector, with the 1 % and 5 % FPR marks. */
export function rocSvg(title: string, curves: { name: string; points: [number, number][]; auroc: number }[]): string {
  const W = 420;
  const H = 420;
  const m = { l: 50, r: 10, t: 30, b: 45 };
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  const X = (f: number) => (m.l + f * pw).toFixed(1);
  const Y = (t: number) => (m.t + (1 - t) * ph).toFixed(1);
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`);
  parts.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  parts.push(`<text x="${W / 2}" y="18" text-anchor="middle" font-size="13">${esc(title)}</text>`);
  parts.push(`<rect x="${m.l}" y="${m.t}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  for (const v of [0, 0.2, 0.4, 0.6, 0.8, 1]) {
    parts.push(`<line x1="${X(v)}" y1="${m.t + ph}" x2="${X(v)}" y2="${m.t + ph + 4}" stroke="#333"/><text x="${X(v)}" y="${m.t + ph + 16}" text-anchor="middle">${v}</text>`);
    parts.push(`<line x1="${m.l - 4}" y1="${Y(v)}" x2="${m.l}" y2="${Y(v)}" stroke="#333"/><text x="${m.l - 7}" y="${Number(Y(v)) + 4}" text-anchor="end">${v}</text>`);
  }
  for (const f of [0.01, 0.05]) parts.push(`<line x1="${X(f)}" y1="${m.t}" x2="${X(f)}" y2="${m.t + ph}" stroke="#bbb" stroke-dasharray="3,3"/>`);
  parts.push(`<line x1="${X(0)}" y1="${Y(0)}" x2="${X(1)}" y2="${Y(1)}" stroke="#ddd"/>`);
  parts.push(`<text x="${m.l + pw / 2}" y="${H - 8}" text-anchor="middle">false-positive rate (clean test)</text>`);
  parts.push(`<text x="14" y="${m.t + ph / 2}" text-anchor="middle" transform="rotate(-90 14 ${m.t + ph / 2})">true-positive rate (successful adversarial)</text>`);
  curves.forEach((c, i) => {
    const col = PALETTE[i % PALETTE.length];
    parts.push(`<polyline fill="none" stroke="${col}" stroke-width="1.6" points="${c.points.map(([f, t]) => `${X(f)},${Y(t)}`).join(' ')}"/>`);
    parts.push(`<rect x="${m.l + pw - 150}" y="${m.t + ph - 14 - 14 * (curves.length - 1 - i)}" width="10" height="3" fill="${col}"/>`);
    parts.push(`<text x="${m.l + pw - 136}" y="${m.t + ph - 10 - 14 * (curves.length - 1 - i)}">${esc(c.name)} (AUROC ${c.auroc.toFixed(3)})</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}

/** Detector label in tables: lab baselines marked [lab], supervised ones (supervised). */
export function detLabel(r: { detector: string; source: string; supervised: boolean }): string {
  return `${r.detector}${r.source === 'lab' ? ' [lab]' : ''}${r.supervised ? ' (supervised)' : ''}`;
}

const f3 = (x: number | undefined) => (x === undefined || Number.isNaN(x) ? '–' : x.toFixed(3));
const pct = (x: number | undefined) => (x === undefined || Number.isNaN(x) ? '–' : `${(100 * x).toFixed(1)} %`);

export function epsLabel(r: { eps: string; eps255: number | null; norm: string }): string {
  if (r.norm && r.norm.toLowerCase() === 'l2') return r.eps ? `L2 ${r.eps}` : '–';
  if (r.eps255 === null) return r.eps || '–';
  if (r.norm && r.norm.toLowerCase() !== 'linf' && r.norm.toLowerCase() !== 'l_inf') return r.eps;
  return Number.isInteger(r.eps255) ? `${r.eps255}/255` : r.eps;
}

/** Groups rows by attack × ε in a stable order. */
export function groupKeys(rows: EvalRow[]): { attack: string; eps: string }[] {
  const seen = new Map<string, { attack: string; eps: string; e: number | null }>();
  for (const r of rows) {
    const e = r.eps255 ?? (Number.isFinite(Number(r.eps)) && r.eps !== '' ? Number(r.eps) : null);
    if (!seen.has(`${r.attack}|${r.eps}`)) seen.set(`${r.attack}|${r.eps}`, { attack: r.attack, eps: r.eps, e });
  }
  return [...seen.values()].sort((a, b) => a.attack.localeCompare(b.attack) || (a.e ?? 1e9) - (b.e ?? 1e9)).map(({ attack, eps }) => ({ attack, eps }));
}

/** report.md: headline (best unsupervised per attack × ε), full table, calibration, benign shifts, notes. */
export function renderMarkdown(rep: EvalReport, sections: string[] = []): string {
  const L: string[] = [];
  L.push('# Warden detector evaluation', '');
  L.push(`Created ${rep.createdAt}. Bundle: \`${rep.bundle ?? '?'}\` (model sha256 \`${(rep.modelSha256 ?? '?').slice(0, 16)}…\`). Manifest: \`${rep.manifest ?? '?'}\`.`, '');
  L.push('Positives: successful adversarial examples (after uint8 rounding). Negatives: clean test images. TPR at 1 % / 5 % FPR uses thresholds from the clean CALIBRATION split (conformal p ≤ 0.01 / 0.05), never from test scores; detectors marked *supervised* were trained with adversarial examples.', '');
  const keys = groupKeys(rep.rows);
  L.push(...sections);
  L.push('## Headline: best unsupervised detector per attack × ε', '');
  L.push('| attack | ε | n_adv | best AUROC (detector) | best TPR @1 % FPR (detector) | best TPR @5 % FPR (detector) |', '|---|---|---|---|---|---|');
  for (const k of keys) {
    const rs = rep.rows.filter((r) => r.attack === k.attack && r.eps === k.eps && !r.supervised && !Number.isNaN(r.auroc));
    if (!rs.length) continue;
    const best = (f: (r: EvalRow) => number) => rs.reduce((a, b) => (f(b) > f(a) ? b : a));
    const a = best((r) => r.auroc);
    const t1 = best((r) => r.tpr_at_fpr_1);
    const t5 = best((r) => r.tpr_at_fpr_5);
    L.push(`| ${k.attack} | ${epsLabel(rs[0])} | ${rs[0].n_adv} | ${f3(a.auroc)} (${detLabel(a)}) | ${pct(t1.tpr_at_fpr_1)} (${detLabel(t1)}) | ${pct(t5.tpr_at_fpr_5)} (${detLabel(t5)}) |`);
  }
  L.push('', '## Calibration on clean test images (nominal flag rates 5 %, 1 %, 0.5 %)', '');
  L.push('| detector | n | flagged @5 % | flagged @1 % | flagged @0.5 % | 5 % within [2.5, 7.5] % |', '|---|---|---|---|---|---|');
  for (const c of rep.clean) {
    L.push(`| ${detLabel(c)} | ${c.n} | ${pct(c.flag_rate_5)} | ${pct(c.flag_rate_1)} | ${pct(c.flag_rate_05)} | ${c.flag_rate_5 >= 0.025 && c.flag_rate_5 <= 0.075 ? 'yes' : 'NO'} |`);
  }
  if (rep.benign.length) {
    const shifts = [...new Set(rep.benign.map((b) => b.shift))];
    const dets = [...new Map(rep.benign.map((b) => [detLabel(b), b])).keys()];
    L.push('', '## Benign shifts: flag rate at nominal 5 % (goal ≤ 10 %)', '');
    L.push(`| detector | ${shifts.join(' | ')} |`, `|---|${shifts.map(() => '---').join('|')}|`);
    for (const d of dets) {
      L.push(`| ${d} | ${shifts.map((s) => pct(rep.benign.find((b) => detLabel(b) === d && b.shift === s)?.flag_rate_5)).join(' | ')} |`);
    }
  }
  L.push('', '## All rows', '');
  L.push('| attack | ε | detector | supervised | n_adv / attempted | n_clean | AUROC | TPR @1 % | TPR @5 % |', '|---|---|---|---|---|---|---|---|---|');
  for (const k of keys) {
    for (const r of rep.rows.filter((x) => x.attack === k.attack && x.eps === k.eps)) {
      L.push(`| ${r.attack} | ${epsLabel(r)} | ${detLabel(r)} | ${r.supervised ? 'yes' : 'no'} | ${r.n_adv} / ${r.n_attempted} | ${r.n_clean} | ${f3(r.auroc)} | ${pct(r.tpr_at_fpr_1)} | ${pct(r.tpr_at_fpr_5)} |`);
    }
  }
  if (rep.notes.length) L.push('', '## Notes', '', ...rep.notes.map((n) => `- ${n}`));
  return L.join('\n') + '\n';
}
