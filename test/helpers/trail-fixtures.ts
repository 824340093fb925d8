import { createHash, createHmac } from 'node:crypto';
import * as fs from 'node:fs';
import * as dcmjs from 'dcmjs';
import type { AuditDecisionInput, AuditIdentityInput, AuditVerdict, RecordDecisionInput } from '../../src/audit';
import { readLabManifest, type LabRow } from './lab-fixtures';

/**
 * Lab fixture instances dressed as the gateway would hand them to the trail: HMAC'd UIDs (a test secret, as
 * issue 11's per-install secret will be), sha256 of the original bytes, and the identifiers the trail must
 * never contain (for the grep tests).
 */
export const TEST_UID_SECRET = 'warden-test-uid-secret';

export function hmacUid(uid: string): string {
  return createHmac('sha256', TEST_UID_SECRET).update(uid.replace(/[\0 ]+$/, ''), 'utf8').digest('hex');
}

export interface Identifiers {
  patientName: string;
  patientId: string;
  birthDate: string;
  accessionNumber: string;
  studyUid: string;
  seriesUid: string;
  sopUid: string;
}

export interface FixtureInstance {
  row: LabRow;
  bytes: Buffer;
  sha256: string;
  identity: AuditIdentityInput;
  identifiers: Identifiers;
}

dcmjs.log.setLevel('error');

function text(v: unknown): string {
  if (Array.isArray(v)) v = v[0];
  if (v && typeof v === 'object' && 'Alphabetic' in (v as object)) return String((v as { Alphabetic: string }).Alphabetic);
  return v === undefined || v === null ? '' : String(v);
}

export function identifiersOf(bytes: Buffer): Identifiers & { sopClassUid: string; modality: string; transferSyntaxUid: string } {
  const ab = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  const file = dcmjs.data.DicomMessage.readFile(ab as ArrayBuffer);
  const ds = dcmjs.data.DicomMetaDictionary.naturalizeDataset(file.dict);
  return {
    patientName: text(ds.PatientName),
    patientId: text(ds.PatientID),
    birthDate: text(ds.PatientBirthDate),
    accessionNumber: text(ds.AccessionNumber),
    studyUid: text(ds.StudyInstanceUID),
    seriesUid: text(ds.SeriesInstanceUID),
    sopUid: text(ds.SOPInstanceUID),
    sopClassUid: text(ds.SOPClassUID),
    modality: text(ds.Modality),
    transferSyntaxUid: text(file.meta['00020010']?.Value),
  };
}

export function fixtureFromBytes(bytes: Buffer, row: LabRow): FixtureInstance {
  const ids = identifiersOf(bytes);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  return {
    row, bytes, sha256,
    identifiers: ids,
    identity: {
      studyHash: hmacUid(ids.studyUid),
      seriesHash: hmacUid(ids.seriesUid),
      sopHash: hmacUid(ids.sopUid),
      sopClassUid: ids.sopClassUid,
      modality: ids.modality,
      transferSyntaxUid: ids.transferSyntaxUid,
      sizeBytes: bytes.length,
      sha256,
    },
  };
}

/** The first `n` lab fixture instances of a kind ('clean', 'adversarial', 'benign'), in manifest order. */
export function labInstances(kind: string, n: number): FixtureInstance[] {
  return readLabManifest().filter((r) => r.kind === kind).slice(0, n).map((r) => fixtureFromBytes(fs.readFileSync(r.path), r));
}

/**
 * A lab fixture re-written with a patient birth date (the fixtures leave it empty), so a grep for it can fail.
 */
export function withBirthDate(inst: FixtureInstance, birthDate: string): FixtureInstance {
  const ab = inst.bytes.buffer.slice(inst.bytes.byteOffset, inst.bytes.byteOffset + inst.bytes.byteLength);
  const file = dcmjs.data.DicomMessage.readFile(ab as ArrayBuffer);
  const ds = dcmjs.data.DicomMetaDictionary.naturalizeDataset(file.dict);
  ds.PatientBirthDate = birthDate;
  file.dict = dcmjs.data.DicomMetaDictionary.denaturalizeDataset(ds);
  const out = Buffer.from(file.write());
  return fixtureFromBytes(out, inst.row);
}

/** A Decision shaped as the policy's (issue 10), with the structured reasons a verdict of this kind carries. */
export function decisionFor(verdict: AuditVerdict, opts: { detector?: string; pValue?: number; observed?: AuditVerdict } = {}): AuditDecisionInput {
  const detector = opts.detector ?? 'uad';
  const p = opts.pValue ?? (verdict === 'forward' ? 0.4 : 0.0009);
  const reasons = verdict === 'block'
    ? [{ signal: 'adversarial' as const, code: 'ADVERSARIAL_PVALUE', detector, pValue: p, threshold: 0.001 }]
    : verdict === 'flag'
      ? [{ signal: 'domain' as const, code: 'DOMAIN_PVALUE', detector: 'kd', pValue: p, threshold: 0.01 }]
      : [];
  return {
    verdict,
    reasons,
    ...(opts.observed ? { observed: { verdict: opts.observed } } : {}),
    scores: {
      uad: { score: verdict === 'block' ? 9.5 : 1.2, pValue: detector === 'uad' ? p : 0.3, signal: 'adversarial' },
      kd: { score: verdict === 'flag' ? 4.1 : 0.7, pValue: verdict === 'flag' ? p : 0.5, signal: 'domain' },
      nrd: { score: Number.NaN, pValue: 1, signal: 'adversarial' },
    },
    prediction: { label: verdict === 'block' ? 'PNEUMONIA' : 'NORMAL', probability: 0.93 },
    timings: { decode: 3.2, preprocess: 1.1, infer: 17.5, detect: 0.8 },
  };
}

export function recordInput(inst: FixtureInstance, verdict: AuditVerdict, time: number, opts: { requestId?: string; quarantined?: boolean; detector?: string } = {}): RecordDecisionInput {
  const blocked = verdict === 'block';
  return {
    decision: decisionFor(verdict, { detector: opts.detector }),
    identity: inst.identity,
    context: {
      time,
      route: 'stow',
      requestId: opts.requestId ?? `req-${time}`,
      client: 'modality-ct1',
      modelSha256: 'a'.repeat(64),
      bundleSha256: 'b'.repeat(64),
      forwarded: !blocked,
      upstreamStatus: blocked ? null : 200,
      upstreamFailureReason: blocked ? 0xa900 : null,
    },
    quarantined: opts.quarantined ?? blocked,
  };
}
