import type { Reason } from '../core/types';

/** One reason as a short line for logs, headers and the CLI table, e.g. `uad:p=0.0012<=0.005`, `error:DICOM_TRUNCATED`. */
export function formatReason(r: Reason): string {
  if (r.signal === 'adversarial' && r.detector !== undefined && r.pValue !== undefined) return `${r.detector}:p=${formatP(r.pValue)}<=${r.threshold}`;
  if (r.signal === 'domain' && r.detector !== undefined && r.pValue !== undefined) return `out_of_domain:${r.detector}:p=${formatP(r.pValue)}<=${r.threshold}`;
  if (r.signal === 'error') return r.code === 'no_decision_detector' ? `error:NO_DECISION_DETECTOR(${r.detector ?? ''})` : `error:${r.code}`;
  return r.detail ? `${r.code}:${r.detail}` : r.code;
}

export function formatReasons(reasons: readonly Reason[]): string[] {
  return reasons.map(formatReason);
}

/**
 * What a flag rests on, for metric labels: one {signal, detector} per signal that flagged (adversarial and domain may
 * both), else the error policy, else `other` (e.g. an out-of-scope action).
 */
export function flagLabels(reasons: readonly Reason[]): { signal: string; detector: string }[] {
  const detected = reasons.filter((r) => (r.signal === 'adversarial' || r.signal === 'domain') && r.detector);
  if (detected.length) return detected.map((r) => ({ signal: r.signal, detector: r.detector! }));
  if (reasons.some((r) => r.signal === 'error')) return [{ signal: 'error', detector: 'error_policy' }];
  return [{ signal: reasons[0]?.signal ?? 'other', detector: 'other' }];
}

export function formatP(p: number): string {
  return p < 0.001 ? p.toExponential(2) : p.toFixed(4);
}
