import type { Verdict, VerdictRecord } from '../../src/core/types';
import { hashUid } from '../../src/dicom/hash';
import { DEFAULT_POLICY, type Policy } from '../../src/policy';
import { readIdentity } from '../../src/proxy/identity';
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
  async scan(bytes: Uint8Array, meta: { partIndex?: number }): Promise<VerdictRecord> {
    if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
    const id = readIdentity(bytes);
    if (!id || !id.sopInstanceUid) {
      return { partIndex: meta.partIndex, status: 'error', error: { code: 'NOT_DICOM', message: 'not DICOM' }, verdict: this.policy.onError.decode, reasons: ['error:NOT_DICOM'], timings: { decode: 1 } };
    }
    this.seen.push(id.sopInstanceUid);
    const verdict = this.verdicts[id.sopInstanceUid] ?? 'forward';
    const p = verdict === 'block' ? 0.001 : verdict === 'flag' ? 0.02 : 0.5;
    return {
      partIndex: meta.partIndex, sopInstanceUidHash: hashUid(id.sopInstanceUid), status: 'scanned',
      scores: { uad: { score: -Math.log(p), pValue: p } }, verdict,
      reasons: verdict === 'forward' ? [] : [`uad:p=${p}<=${verdict === 'block' ? 0.005 : 0.05}`],
      timings: { decode: 1, preprocess: 1, inference: 5, detect: 1 },
    };
  }
}
