/**
 * A detector's score against its clean calibration distribution, as a small inline SVG: a histogram of the
 * clean scores and a marker at the instance's score (pinned to the edge, with its value, when it lies far
 * outside), so a reviewer sees at a glance how unusual the score is.
 */
import { escapeHtml } from './html';

export interface CalibrationPlotInput {
  detector: string;
  /** Clean calibration scores (any order). */
  calibration: ArrayLike<number>;
  score: number | null;
  pValue: number | null;
  /** Marker colour: outside the clean range at the policy's threshold. */
  alarming?: boolean;
  width?: number;
  height?: number;
  bins?: number;
}

function fmt(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  const a = Math.abs(x);
  return a !== 0 && (a >= 1e4 || a < 1e-3) ? x.toExponential(2) : x.toFixed(a >= 100 ? 0 : a >= 10 ? 1 : 3);
}

export function calibrationPlotSvg(input: CalibrationPlotInput): string {
  const width = input.width ?? 260;
  const height = input.height ?? 64;
  const bins = input.bins ?? 30;
  const cal = Array.from(input.calibration).filter(Number.isFinite).sort((a, b) => a - b);
  const label = `${input.detector}: score ${input.score === null ? 'n/a' : fmt(input.score)} against ${cal.length} clean calibration scores` +
    (input.pValue === null ? '' : `, p = ${fmt(input.pValue)}`);
  const pad = 4;
  const axisY = height - 14;
  if (cal.length === 0) {
    return `<svg xmlns="http://www.w3.org/2000/svg" class="plot" width="${width}" height="${height}" role="img" aria-label="${escapeHtml(label)}"><title>${escapeHtml(label)}</title><text x="${pad}" y="${height / 2}" font-size="11">no calibration scores</text></svg>`;
  }
  let lo = cal[0];
  let hi = cal[cal.length - 1];
  const span0 = hi - lo || Math.abs(hi) || 1;
  const s = input.score;
  // Extend the axis to the score when it is near; pin it to the edge when it is far (the histogram stays readable).
  let pinned: 'left' | 'right' | null = null;
  if (s !== null && Number.isFinite(s)) {
    if (s > hi) { if (s - hi <= span0) hi = s; else pinned = 'right'; }
    if (s < lo) { if (lo - s <= span0) lo = s; else pinned = 'left'; }
  }
  if (hi === lo) { hi = lo + 0.5; lo -= 0.5; }
  const span = hi - lo;
  const counts = new Array<number>(bins).fill(0);
  for (const v of cal) counts[Math.min(bins - 1, Math.floor(((v - lo) / span) * bins))]++;
  const max = Math.max(...counts);
  const plotW = width - 2 * pad;
  const barW = plotW / bins;
  const x = (v: number) => pad + ((v - lo) / span) * plotW;
  const bars = counts.map((c, i) => {
    const h = max ? (c / max) * (axisY - pad) : 0;
    return `<rect x="${(pad + i * barW).toFixed(1)}" y="${(axisY - h).toFixed(1)}" width="${Math.max(0.5, barW - 0.5).toFixed(1)}" height="${h.toFixed(1)}" fill="#9aa5b1"/>`;
  }).join('');
  let marker = '';
  if (s !== null && Number.isFinite(s)) {
    const mx = pinned === 'right' ? width - pad : pinned === 'left' ? pad : x(s);
    const colour = input.alarming ? '#c0392b' : '#1f6feb';
    const text = `${pinned === 'left' ? '◀ ' : ''}${fmt(s)}${pinned === 'right' ? ' ▶' : ''}`;
    const anchor = mx > width * 0.7 ? 'end' : mx < width * 0.3 ? 'start' : 'middle';
    marker = `<line x1="${mx.toFixed(1)}" y1="${pad}" x2="${mx.toFixed(1)}" y2="${axisY}" stroke="${colour}" stroke-width="2"/>` +
      `<text x="${mx.toFixed(1)}" y="${pad + 9}" font-size="10" fill="${colour}" text-anchor="${anchor}" dx="${anchor === 'end' ? -3 : anchor === 'start' ? 3 : 0}">${escapeHtml(text)}</text>`;
  }
  const axis = `<line x1="${pad}" y1="${axisY}" x2="${width - pad}" y2="${axisY}" stroke="#52606d"/>` +
    `<text x="${pad}" y="${height - 2}" font-size="9" fill="#52606d">${escapeHtml(fmt(lo))}</text>` +
    `<text x="${width - pad}" y="${height - 2}" font-size="9" fill="#52606d" text-anchor="end">${escapeHtml(fmt(hi))}</text>`;
  return `<svg xmlns="http://www.w3.org/2000/svg" class="plot" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${escapeHtml(label)}"><title>${escapeHtml(label)}</title>${bars}${axis}${marker}</svg>`;
}
