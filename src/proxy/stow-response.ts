import { TAG } from '../dicom';
import { formatReasons } from '../policy';
import { FAILURE_REASONS, failureCauseOf } from './failure-reasons';
import type { UpstreamOutcome } from './forward';
import type { JudgedPart } from './judge';
import { sanitizeHeader } from './multipart-writer';

/**
 * The PS3.18 STOW-RS answer (§10.5.3): which instances were stored (ReferencedSOPSequence) and which were not, with
 * their FailureReason (FailedSOPSequence), Warden's verdict and readable reason in its private block, Warning
 * headers, and the status: 200 all stored, 202 some, 409 none.
 */

/** A part with what became of it: stored upstream or not, and why. */
export interface PartResult {
  part: JudgedPart;
  stored: boolean;
  /** FailureReason (0008,1197) when not stored. */
  failureReason?: number;
}

/** Combines the policy's decisions with the upstream's per-instance outcomes (unforwarded = blocked). */
export function partResults(parts: JudgedPart[], outcomes: ReadonlyMap<number, UpstreamOutcome> | 'all_failed'): PartResult[] {
  return parts.map((part) => {
    const cause = failureCauseOf(part.decision);
    if (cause) return { part, stored: false, failureReason: FAILURE_REASONS[cause].code };
    const o = outcomes === 'all_failed' ? undefined : outcomes.get(part.index);
    if (o?.stored) return { part, stored: true };
    return { part, stored: false, failureReason: o && !o.stored ? o.failureReason : FAILURE_REASONS.upstream_failed.code };
  });
}

/** What the sender reads about one instance (private tag 0009,1002 and the Warning header). */
export function readable(r: { part: JudgedPart; stored: boolean }): string {
  const { decision } = r.part;
  const reasons = formatReasons(decision.reasons);
  if (decision.wouldBe) {
    const would = `observe mode: would have been ${decision.wouldBe === 'block' ? 'blocked' : 'flagged'} (${reasons.join('; ')})`;
    return r.stored ? `stored; ${would}` : `${FAILURE_REASONS.upstream_failed.text}; ${would}`;
  }
  if (decision.verdict === 'flag' && r.stored) return `flagged (forwarded): ${reasons.join('; ')}`;
  const cause = failureCauseOf(decision) ?? (r.stored ? undefined : 'upstream_failed');
  if (!cause) return 'stored';
  const base = FAILURE_REASONS[cause].text;
  return reasons.length && cause !== 'upstream_failed' ? `${base} (${reasons.join('; ')})` : base;
}

export function stowStatus(results: PartResult[], warningsAs202: boolean): number {
  const stored = results.filter((r) => r.stored).length;
  if (stored === results.length) return warningsAs202 && results.some((r) => r.part.decision.verdict === 'flag') ? 202 : 200;
  return stored === 0 ? 409 : 202;
}

type Json = Record<string, unknown>;
const ui = (v: string | undefined): Json => (v ? { vr: 'UI', Value: [v] } : { vr: 'UI' });

/** The response dataset (application/dicom+json); `note` prefixes every failed item's reason (upstream failures). */
export function stowBody(results: PartResult[], publicBase: string, note?: string): Json {
  const enc = encodeURIComponent;
  const referenced: Json[] = [];
  const failed: Json[] = [];
  for (const r of results) {
    const id = r.part.header;
    const text = readable(r);
    const item: Json = {
      [TAG.ReferencedSOPClassUID]: ui(id?.sopClassUid),
      [TAG.ReferencedSOPInstanceUID]: ui(id?.sopInstanceUid),
      [TAG.WardenPrivateCreator]: { vr: 'LO', Value: ['WARDEN 1'] },
      [TAG.WardenVerdict]: { vr: 'CS', Value: [r.part.decision.verdict.toUpperCase()] },
      [TAG.WardenReason]: { vr: 'LT', Value: [note && !r.stored ? `${note} ${text}`.trim() : text] },
      [TAG.WardenPartNumber]: { vr: 'UL', Value: [r.part.index + 1] },
      ...(r.part.decision.wouldBe ? { [TAG.WardenWouldBe]: { vr: 'CS', Value: [r.part.decision.wouldBe.toUpperCase()] } } : {}),
    };
    if (r.stored && id?.studyInstanceUid && id.seriesInstanceUid && id.sopInstanceUid) {
      item[TAG.RetrieveURL] = { vr: 'UR', Value: [`${publicBase}/studies/${enc(id.studyInstanceUid)}/series/${enc(id.seriesInstanceUid)}/instances/${enc(id.sopInstanceUid)}`] };
    }
    if (r.stored) referenced.push(item);
    else failed.push({ ...item, [TAG.FailureReason]: { vr: 'US', Value: [r.failureReason ?? FAILURE_REASONS.upstream_failed.code] } });
  }
  const body: Json = {};
  // Retrieve URL (0008,1190) of the study, at Warden (never the upstream's address), when one study was stored
  const storedStudies = new Set(results.filter((r) => r.stored).map((r) => r.part.header?.studyInstanceUid));
  const [onlyStudy] = storedStudies;
  if (storedStudies.size === 1 && onlyStudy) body[TAG.RetrieveURL] = { vr: 'UR', Value: [`${publicBase}/studies/${enc(onlyStudy)}`] };
  if (referenced.length) body[TAG.ReferencedSOPSequence] = { vr: 'SQ', Value: referenced };
  if (failed.length) body[TAG.FailedSOPSequence] = { vr: 'SQ', Value: failed };
  return body;
}

/**
 * One `Warning: 299 warden "…"` per instance worth a warning (at most 20, then a summary). `headline` (e.g. "2 of
 * 5 instances withheld by policy") comes first when given.
 */
export function warningHeaders(results: { part: JudgedPart; stored: boolean }[], notable: (r: { part: JudgedPart; stored: boolean }) => boolean,
  describe: (r: { part: JudgedPart; stored: boolean }) => string, headline?: string): string[] {
  const picked = results.filter(notable);
  const out = headline ? [`299 warden "${headline}"`] : [];
  for (const r of picked.slice(0, 20)) {
    const who = r.part.header?.sopInstanceUid ? `instance ${r.part.header.sopInstanceUid}` : `part ${r.part.index + 1}`;
    out.push(`299 warden "${sanitizeHeader(`${who}: ${describe(r)}`).replace(/"/g, "'")}"`);
  }
  if (picked.length > 20) out.push(`299 warden "${picked.length - 20} more instances flagged or not stored"`);
  return out;
}
