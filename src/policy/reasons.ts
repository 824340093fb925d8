import type { Reason } from '../core/types';

/** One reason as a short line for logs, headers and the CLI table, e.g. `uad:p=0.0012<=0.005`, `error:DICOM_TRUNCATED`. */
export function formatReason(r: Reason): string {
  if (r.code === 'detected' && r.detector !== undefined && r.pValue !== undefined) return `${r.detector}:p=${formatP(r.pValue)}<=${r.threshold}`;
  if (r.signal === 'error') return r.code === 'no_decision_detector' ? `error:NO_DECISION_DETECTOR(${r.detector ?? ''})` : `error:${r.code}`;
  return r.detail ? `${r.code}:${r.detail}` : r.code;
}

export function formatReasons(reasons: readonly Reason[]): string[] {
  return reasons.map(formatReason);
}

/** The detector label a flag or block rests on, for metric labels: the detector(s), `error_policy`, or `other`. */
export function reasonLabel(reasons: readonly Reason[]): string {
  const detected = reasons.find((r) => r.code === 'detected' && r.detector);
  if (detected) return detected.detector!;
  return reasons.some((r) => r.signal === 'error') ? 'error_policy' : 'other';
}

export function formatP(p: number): string {
  return p < 0.001 ? p.toExponential(2) : p.toFixed(4);
}
