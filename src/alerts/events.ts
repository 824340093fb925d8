import { randomUUID } from 'node:crypto';
import type { AuthFailedEvent, InstanceDecidedEvent, ReviewActionEvent } from '../core/events';
import { formatReasons } from '../policy';

/**
 * Security events: one flat JSON object per flag, block, would-be block (observe mode), release, discard and
 * authentication failure, with stable field names (docs/events.md). Hashes and closed-set values only: never a UID,
 * a patient attribute or a token.
 */
export type SecurityEventType = 'flag' | 'block' | 'would_flag' | 'would_block' | 'release' | 'discard' | 'auth_failure';

export interface SecurityEvent {
  /** Marks the line as a security event among the JSON log lines on stdout. */
  stream: 'warden-security';
  /** Version of the field layout. */
  schema: 1;
  id: string;
  time: string;
  type: SecurityEventType;
  route?: string;
  requestId?: string;
  /** The token holder (sender, reviewer, admin), never the token. */
  client?: string;
  actor?: string;
  recordId?: string;
  studyHash?: string;
  sopHash?: string;
  verdict?: string;
  signals?: string[];
  detectors?: string[];
  pValues?: Record<string, number>;
  reasons?: string[];
  quarantined?: boolean;
  outcome?: string;
  upstreamStatus?: number | null;
  status?: number;
}

const base = (type: SecurityEventType): SecurityEvent => ({ stream: 'warden-security', schema: 1, id: randomUUID(), time: new Date().toISOString(), type });

/** The event of a decision, when it is one (a flag, a block, or what observe mode would have done); else null. */
export function decisionEvent(e: InstanceDecidedEvent): SecurityEvent | null {
  const d = e.decision;
  const type: SecurityEventType | null = d.verdict === 'block' ? 'block' : d.verdict === 'flag' ? 'flag'
    : d.wouldBe === 'block' ? 'would_block' : d.wouldBe === 'flag' ? 'would_flag' : null;
  if (!type) return null;
  const detecting = d.reasons.filter((r) => r.detector && (r.signal === 'adversarial' || r.signal === 'domain'));
  return {
    ...base(type),
    route: e.route,
    ...(e.requestId ? { requestId: e.requestId } : {}),
    ...(e.client ? { client: e.client } : {}),
    ...(e.recordId ? { recordId: e.recordId } : {}),
    ...(e.studyHash ? { studyHash: e.studyHash } : {}),
    ...(e.sopHash ? { sopHash: e.sopHash } : {}),
    verdict: d.wouldBe ?? d.verdict,
    signals: [...new Set(d.reasons.map((r) => r.signal))],
    detectors: [...new Set(detecting.flatMap((r) => r.detector!.split('+')))],
    ...(d.pValues ? { pValues: { ...d.pValues } as Record<string, number> } : {}),
    reasons: formatReasons(d.reasons),
    quarantined: e.quarantined ?? false,
  };
}

export function reviewEvent(e: ReviewActionEvent): SecurityEvent {
  return {
    ...base(e.action), actor: e.actor, recordId: e.recordId, outcome: e.outcome, upstreamStatus: e.upstreamStatus ?? null,
    ...(e.studyHash ? { studyHash: e.studyHash } : {}), ...(e.sopHash ? { sopHash: e.sopHash } : {}),
  };
}

export function authEvent(e: AuthFailedEvent): SecurityEvent {
  return { ...base('auth_failure'), route: e.route, status: e.status, ...(e.client ? { client: e.client } : {}) };
}
