import type { Verdict } from '../../src/core/types';
import { hashUid } from '../../src/dicom/hash';
import { readHeader } from '../../src/dicom';
import { DEFAULT_POLICY, decide, makeDecision, type Policy } from '../../src/policy';
import type { ScanResult } from '../../src/pipeline';
import type { Scanner } from '../../src/proxy/context';

/**
 * A stand-in for ScanPipeline in proxy-only tests: the verdict of an instance is looked up by its SOP Instance
 * UID (default forward). It never mutates the bytes and records what it saw.
 */
export class FakeScanner implements Scanner {
  readonly provider = 'fake';
  readonly modelSha256 = '0'.repeat(64);
  readonly bundle = { names: ['uad'] };
  readonly policy: Policy;
  readonly seen: string[] = [];
  delayMs = 0;
  constructor(public verdicts: Record<string, Verdict> = {}, policy: Policy = DEFAULT_POLICY) { this.policy = policy; }
  queueDepth(): number { return 0; }
  async close(): Promise<void> {}
  async scan(bytes: Uint8Array, meta: { partIndex?: number }): Promise<ScanResult> {
    if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
    const id = readHeader(bytes);
    if (!id || !id.sopInstanceUid) {
      const decision = decide({ kind: 'error', code: 'NOT_DICOM' }, this.policy);
      return { record: { partIndex: meta.partIndex, status: 'error', error: { code: 'NOT_DICOM', message: 'not DICOM' }, verdict: decision.verdict, reasons: decision.reasons, timings: { decode: 1 } }, decision };
    }
    this.seen.push(id.sopInstanceUid);
    const verdict = this.verdicts[id.sopInstanceUid] ?? 'forward';
    const p = verdict === 'block' ? 0.001 : verdict === 'flag' ? 0.02 : 0.5;
    const threshold = verdict === 'block' ? 0.005 : 0.05;
    const decision = makeDecision(verdict, verdict === 'forward' ? [] : [{ signal: 'adversarial', code: 'detected', detector: 'uad', pValue: p, threshold }], { pValue: p });
    return {
      record: {
        partIndex: meta.partIndex, sopInstanceUidHash: hashUid(id.sopInstanceUid), status: 'scanned',
        scores: { uad: { score: -Math.log(p), pValue: p } }, verdict, reasons: decision.reasons,
        timings: { decode: 1, preprocess: 1, inference: 5, detect: 1 },
      },
      decision,
    };
  }
}
