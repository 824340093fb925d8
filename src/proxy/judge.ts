import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import type { Decision, VerdictRecord } from '../core/types';
import { isWardenError } from '../core/errors';
import { readHeaderFrom, decodedBytesEstimate, type InstanceHeader } from '../dicom';
import { decide, decideStudy, type InstanceOutcome } from '../policy';
import type { AppContext, ScanRuntime } from './context';
import { ingestMultipart, parseMediaType, type IngestedPart } from './multipart';
import type { StoredPart } from './spool';

/**
 * Part handling, shared by STOW-RS requests and scanned WADO-RS retrieves: each part of a multipart body is stored
 * as it streams in, its header read, scanned under the gateway's scan limits and judged by the policy; once the body
 * has ended the study rule is applied. The proxy never makes a verdict itself: every Decision comes from src/policy.
 */

export interface JudgedPart {
  readonly index: number;
  readonly stored: StoredPart;
  /** The instance's header (UIDs, claimed modality and geometry); null when the part is not a Part-10 instance. */
  readonly header: InstanceHeader | null;
  /** The part's own headers (lower-cased names), kept for WADO-RS re-emission. */
  readonly partHeaders: Record<string, string>;
  readonly record?: VerdictRecord;
  readonly decision: Decision;
}

export interface JudgedBody {
  /** In body order, the study rule applied. */
  parts: JudgedPart[];
  /** The same parts grouped by StudyInstanceUID (unknown studies share one group). */
  studies: JudgedPart[][];
  bodyBytes: number;
  /** performance.now() when the body's last byte was read (scans of early parts were already running). */
  ingestedAt: number;
}

const HEAD_BYTES = 64 * 1024;

export async function judgePart(ctx: AppContext, rt: ScanRuntime, part: IngestedPart, studyFromUrl: string | undefined): Promise<JudgedPart> {
  const { stored, index } = part;
  const { policy } = rt;
  const judged = (header: InstanceHeader | null, outcome: InstanceOutcome, record?: VerdictRecord, decision = decide(outcome, policy)): JudgedPart =>
    ({ index, stored, header, partHeaders: part.headers, ...(record ? { record } : {}), decision });

  if (stored.oversized) return judged(null, { kind: 'rejected', rejection: 'too_large' });
  const partType = parseMediaType(part.headers['content-type'])?.mediaType;
  if (partType && partType !== 'application/dicom') return judged(null, { kind: 'rejected', rejection: 'part_content_type', detail: partType });
  let header: InstanceHeader | null;
  try {
    header = await readHeaderFrom(await stored.head(HEAD_BYTES), stored.size, () => stored.read());
  } catch {
    header = null;
  }
  if (header === null) return judged(null, { kind: 'rejected', rejection: 'not_part10' });
  if (studyFromUrl !== undefined && header.studyInstanceUid !== studyFromUrl) return judged(header, { kind: 'rejected', rejection: 'study_mismatch' });

  let release: (() => void) | null = null;
  try {
    try {
      // weighted by what the scan will hold: the part's bytes plus its decoded pixels (limits.scanMemoryBytes)
      release = await ctx.scans.acquire(ctx.config.limits.scanTimeoutMs, stored.size + decodedBytesEstimate(header, stored.size));
    } catch {
      const record: VerdictRecord = { partIndex: index, status: 'error', error: { code: 'GATEWAY_SATURATED', message: 'The scan waited longer than limits.scanTimeoutMs.' }, timings: {} };
      return judged(header, { kind: 'error', code: 'GATEWAY_SATURATED', errorClass: 'timeout' }, record);
    }
    try {
      const { record, decision } = await rt.scanner.scan(await stored.read(), { partIndex: index });
      return judged(header, { kind: 'unjudged' }, record, decision);
    } catch (err) {
      const code = isWardenError(err) ? err.code : 'INTERNAL';
      const record: VerdictRecord = { partIndex: index, status: 'error', error: { code, message: (err as Error).message }, timings: {} };
      return judged(header, { kind: 'error', code, errorClass: 'model' }, record);
    }
  } finally {
    release?.();
  }
}

/** Groups parts by study and lets the policy apply its study rule to each group. */
export function applyStudyRule(rt: ScanRuntime, parts: JudgedPart[]): { parts: JudgedPart[]; studies: JudgedPart[][] } {
  const groups = new Map<string, JudgedPart[]>();
  for (const p of parts) {
    const key = p.header?.studyInstanceUid ?? '';
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key)!.push(p);
  }
  const ruled = new Map<number, JudgedPart>();
  const studies: JudgedPart[][] = [];
  for (const group of groups.values()) {
    const decisions = decideStudy(group.map((p) => p.decision), rt.policy.studyRule);
    const next = group.map((p, i) => (decisions[i] === p.decision ? p : { ...p, decision: decisions[i] }));
    next.forEach((p) => ruled.set(p.index, p));
    studies.push(next);
  }
  return { parts: parts.map((p) => ruled.get(p.index)!), studies };
}

/**
 * STOW-RS only, after the study rule: a part whose SOP Instance UID an earlier accepted part of the same request
 * already carries is refused (the policy's `duplicate_instance` rejection). The upstream keeps one instance per
 * UID and answers per UID, so Warden could not tell the sender which of the two sets of bytes it stored (found by
 * `npm run fuzz`: two parts with one UID were both reported stored; Orthanc held one).
 */
export function rejectDuplicateInstances(rt: ScanRuntime, body: { parts: JudgedPart[]; studies: JudgedPart[][] }): { parts: JudgedPart[]; studies: JudgedPart[][] } {
  const seen = new Set<string>();
  const replaced = new Map<number, JudgedPart>();
  for (const p of body.parts) {
    const uid = p.header?.sopInstanceUid;
    if (!uid || p.decision.verdict === 'block') continue;
    if (seen.has(uid)) replaced.set(p.index, { ...p, decision: decide({ kind: 'rejected', rejection: 'duplicate_instance' }, rt.policy) });
    else seen.add(uid);
  }
  if (replaced.size === 0) return body;
  const swap = (p: JudgedPart): JudgedPart => replaced.get(p.index) ?? p;
  return { parts: body.parts.map(swap), studies: body.studies.map((s) => s.map(swap)) };
}

/**
 * Reads a multipart/related body part by part, judging each part while the rest still streams in, then applies the
 * study rule. Every part created is pushed to `created` as it starts (the caller disposes of them whatever happens).
 * @throws MULTIPART_MALFORMED, BODY_TOO_LARGE (after every started scan has settled)
 */
export async function ingestAndJudge(ctx: AppContext, rt: ScanRuntime, source: Readable, opts: { boundary: string; study?: string; created: StoredPart[] }): Promise<JudgedBody> {
  const judging: Promise<JudgedPart>[] = [];
  const { limits } = ctx.config;
  let bodyBytes: number;
  try {
    ({ bodyBytes } = await ingestMultipart(source, {
      boundary: opts.boundary,
      maxBodyBytes: limits.maxBodyBytes,
      idleTimeoutMs: limits.bodyIdleTimeoutMs,
      budget: ctx.budget,
      spool: { memoryPartBytes: limits.memoryPartBytes, memoryBudgetBytes: ctx.budget.limit, maxInstanceBytes: limits.maxInstanceBytes, dir: ctx.spoolDir },
      onCreate: (s) => opts.created.push(s),
      onPart: (part) => judging.push(judgePart(ctx, rt, part, opts.study)),
    }));
  } catch (err) {
    await Promise.allSettled(judging);
    throw err;
  }
  const ingestedAt = performance.now();
  const judged = (await Promise.all(judging)).sort((a, b) => a.index - b.index);
  return { ...applyStudyRule(rt, judged), bodyBytes, ingestedAt };
}
