import type pino from 'pino';
import { isWardenError } from '../core/errors';
import { publish, type Route } from '../core/events';
import { hashUid } from '../dicom';
import { worstVerdict } from '../policy';
import type { AppContext, ScanRuntime } from './context';
import type { JudgedPart } from './judge';
import { recordDecisions } from './trail';

/**
 * What a request tells the rest of the gateway once its instances are decided and carried out: one audit record per
 * instance (durable before the sender is answered), one `instanceDecided` event per instance and one `studyDecided`
 * per study (metrics and alerts subscribe), and one log line per instance with hashed UIDs only.
 */
export interface RequestFacts {
  route: Route;
  requestId: string;
  /** The sender's token name (never the token). */
  client: string;
  log: pino.Logger;
  upstreamStatus: number | null;
}

export async function reportDecisions(ctx: AppContext, rt: ScanRuntime, facts: RequestFacts, parts: JudgedPart[], studies: JudgedPart[][],
  outcome: (p: JudgedPart) => { forwarded: boolean; failureReason?: number }, quarantined: ReadonlySet<number> = new Set()): Promise<void> {
  const { route, log } = facts;
  let recordIds = new Map<number, string>();
  if (ctx.trail) {
    try {
      recordIds = await recordDecisions(ctx.trail, {
        route, requestId: facts.requestId, client: facts.client, modelSha256: rt.scanner.modelSha256,
        bundleSha256: rt.bundleSha256 ?? null, upstreamStatus: facts.upstreamStatus,
      }, parts, outcome, quarantined);
    } catch (err) {
      // the answer still goes out (the sender's instances were carried out as decided); the gap is said loudly
      publish('error', { scope: ctx.scope, code: 'AUDIT_STORE_FAILED' });
      log.error({ event: 'audit_failed', code: isWardenError(err) ? err.code : 'AUDIT_STORE_FAILED', message: (err as Error).message }, 'decisions could not be recorded in the audit store');
    }
  }
  for (const p of parts) {
    const skip = p.record?.status === 'skipped' ? (p.record.skipReason === 'out_of_scope' ? 'out_of_scope' : 'not_an_image') : undefined;
    const sopHash = p.record?.sopInstanceUidHash ?? (p.header?.sopInstanceUid ? hashUid(p.header.sopInstanceUid) : undefined);
    const studyHash = p.header?.studyInstanceUid ? hashUid(p.header.studyInstanceUid) : undefined;
    const recordId = recordIds.get(p.index);
    publish('instanceDecided', {
      scope: ctx.scope, route, decision: p.decision, ...(skip ? { unscanned: skip } : {}), spooled: p.stored.spooled,
      requestId: facts.requestId, client: facts.client, ...(sopHash ? { sopHash } : {}), ...(studyHash ? { studyHash } : {}),
      ...(recordId ? { recordId } : {}), quarantined: quarantined.has(p.index),
    });
    const { verdict, wouldBe } = p.decision;
    const entry = {
      event: `${route === 'wado' ? 'wado_' : ''}instance${verdict === 'forward' ? (wouldBe ? `_would_${wouldBe}` : '') : verdict === 'flag' ? '_flagged' : route === 'wado' ? '_withheld' : '_blocked'}`,
      partIndex: p.index, sopHash, studyHash, ...(recordId ? { recordId } : {}),
      verdict, ...(wouldBe ? { wouldBe } : {}), reasons: p.decision.reasons, status: p.record?.status, errorCode: p.record?.error?.code,
      pValues: p.record?.scores ? Object.fromEntries(Object.entries(p.record.scores).map(([k, v]) => [k, v.pValue])) : undefined,
      timings: p.record?.timings, bytes: p.stored.size, forwarded: outcome(p).forwarded, ...(quarantined.has(p.index) ? { quarantined: true } : {}),
    };
    if (verdict === 'forward' && !wouldBe) log.info(entry, route === 'wado' ? 'retrieved instance returned' : 'instance forwarded');
    else if (verdict === 'forward') log.warn(entry, `observe mode: would have been ${wouldBe === 'block' ? 'blocked' : 'flagged'}; forwarded`);
    else log.warn(entry, verdict === 'flag' ? `${route === 'wado' ? 'retrieved instance flagged and returned' : 'instance flagged and forwarded'}` : route === 'wado' ? 'retrieved instance withheld' : 'instance blocked');
  }
  for (const group of studies) publish('studyDecided', { scope: ctx.scope, route, verdict: worstVerdict(group.map((p) => p.decision.verdict)) });
}
