/**
 * Input checks at the store's boundary. Their main job is keeping patient identifiers out: a field meant for
 * a hash accepts only a hex digest, so a raw UID (digits and dots) or a name passed by mistake is refused
 * with a typed error that does not repeat the value.
 */
import { WardenError } from '../core/errors';
import type { AuditReason, AuditRoute, AuditSignal, AuditVerdict, QuarantineState } from './types';
import { QUARANTINE_STATES } from './types';

export const VERDICTS: readonly AuditVerdict[] = ['forward', 'flag', 'block'];
export const SIGNALS: readonly AuditSignal[] = ['adversarial', 'domain', 'scope', 'error', 'study', 'input'];
export const ROUTES: readonly AuditRoute[] = ['stow', 'wado', 'release'];

const HASH = /^[0-9a-f]{16,128}$/;
const SHA256 = /^[0-9a-f]{64}$/;
const UID = /^[0-9]+(\.[0-9]+)*$/;
const WORD = /^[A-Za-z0-9_.:\-]{1,64}$/;
/** A reason's detector: one detector id, or the ids a signal merged, joined by '+' (e.g. squeeze+coherence+margin). */
const DETECTORS = /^[A-Za-z0-9_.:\-]{1,64}(\+[A-Za-z0-9_.:\-]{1,64}){0,15}$/;
const MODALITY = /^[A-Z0-9_ ]{1,16}$/;

function invalid(field: string, what: string): WardenError {
  return new WardenError('AUDIT_INPUT_INVALID', `Audit field ${field} must be ${what}.`, { detail: { field } });
}

export function hashField(value: unknown, field: string): string {
  if (typeof value !== 'string' || !HASH.test(value.toLowerCase())) throw invalid(field, 'a hex hash (16 to 128 hex digits), never a raw identifier');
  return value.toLowerCase();
}

export function optionalHashField(value: unknown, field: string): string | null {
  return value === undefined || value === null ? null : hashField(value, field);
}

export function sha256Field(value: unknown, field: string): string {
  if (typeof value !== 'string' || !SHA256.test(value.toLowerCase())) throw invalid(field, 'a sha256 in hex (64 digits)');
  return value.toLowerCase();
}

/** Model/bundle digests: a hex digest, or the words 'none' / 'unknown' the proxy uses. */
export function digestField(value: unknown, field: string): string | null {
  if (value === undefined || value === null) return null;
  if (value === 'none' || value === 'unknown') return value;
  return hashField(value, field);
}

export function uidField(value: unknown, field: string): string | null {
  if (value === undefined || value === null || value === '') return null;
  if (typeof value !== 'string' || value.length > 64 || !UID.test(value)) throw invalid(field, 'a UID (digits and dots)');
  return value;
}

export function modalityField(value: unknown): string | null {
  if (value === undefined || value === null || value === '') return null;
  if (typeof value !== 'string' || !MODALITY.test(value)) throw invalid('modality', 'a DICOM modality code');
  return value;
}

export function wordField(value: unknown, field: string): string {
  if (typeof value !== 'string' || !WORD.test(value)) throw invalid(field, 'a word of letters, digits and _.:- (at most 64)');
  return value;
}

export function optionalWordField(value: unknown, field: string): string | null {
  return value === undefined || value === null ? null : wordField(value, field);
}

/** Free text written by a person (comments): required, trimmed, bounded. */
export function textField(value: unknown, field: string, max = 2000): string {
  if (typeof value !== 'string' || value.trim() === '') throw invalid(field, 'a non-empty text');
  const t = value.trim();
  if (t.length > max) throw invalid(field, `at most ${max} characters`);
  return t;
}

export function oneOf<T extends string>(value: unknown, allowed: readonly T[], field: string): T {
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) throw invalid(field, `one of ${allowed.join(', ')}`);
  return value as T;
}

export function timeMs(value: Date | number | undefined, field: string, fallback?: number): number {
  if (value === undefined) {
    if (fallback !== undefined) return fallback;
    throw invalid(field, 'a time');
  }
  const ms = value instanceof Date ? value.getTime() : value;
  if (!Number.isFinite(ms)) throw invalid(field, 'a valid time');
  return Math.trunc(ms);
}

export function intOrNull(value: unknown, field: string): number | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== 'number' || !Number.isInteger(value)) throw invalid(field, 'an integer or null');
  return value;
}

/** Finite numbers pass; NaN and ±Infinity become null (JSON and SQL cannot hold them faithfully). */
export function finiteOrNull(value: unknown): number | null {
  return typeof value === 'number' && Number.isFinite(value) ? value : null;
}

export function reasonsField(reasons: unknown): AuditReason[] {
  if (!Array.isArray(reasons)) throw invalid('decision.reasons', 'an array');
  return reasons.map((r: AuditReason, i) => {
    const out: { -readonly [K in keyof AuditReason]: AuditReason[K] } = {
      signal: oneOf(r?.signal, SIGNALS, `decision.reasons[${i}].signal`),
      code: wordField(r?.code, `decision.reasons[${i}].code`),
    };
    if (r.detector !== undefined) {
      if (typeof r.detector !== 'string' || !DETECTORS.test(r.detector)) throw invalid(`decision.reasons[${i}].detector`, "detector ids joined by '+'");
      out.detector = r.detector;
    }
    const p = finiteOrNull(r.pValue);
    if (p !== null) out.pValue = p;
    const t = finiteOrNull(r.threshold);
    if (t !== null) out.threshold = t;
    return out;
  });
}

export function statesField(value: QuarantineState | readonly QuarantineState[]): QuarantineState[] {
  const list = Array.isArray(value) ? value : [value];
  return list.map((s, i) => oneOf(s, QUARANTINE_STATES, `status[${i}]`));
}
