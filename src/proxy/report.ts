import type pino from 'pino';
import { publish, type Route } from '../core/events';
import { hashUid } from '../dicom';
import { worstVerdict } from '../policy';
import type { AppContext } from './context';
import type { JudgedPart } from './judge';

/**
 * What a request tells the rest of the gateway once its instances are decided: one `instanceDecided` event per
 * instance and one `studyDecided` per study (metrics, and later the audit trail, subscribe), and one log line per
 * instance with hashed UIDs only.
 */
export function reportDecisions(ctx: AppContext, route: Route, log: pino.Logger, parts: JudgedPart[], studies: JudgedPart[][], stored?: (p: JudgedPart) => boolean): void {
  for (const p of parts) {
    const skip = p.record?.status === 'skipped' ? (p.record.skipReason === 'out_of_scope' ? 'out_of_scope' : 'not_an_image') : undefined;
    publish('instanceDecided', { scope: ctx.scope, route, decision: p.decision, ...(skip ? { unscanned: skip } : {}), spooled: p.stored.spooled });
    const { verdict, wouldBe } = p.decision;
    const entry = {
      event: `${route === 'wado' ? 'wado_' : ''}instance${verdict === 'forward' ? (wouldBe ? `_would_${wouldBe}` : '') : verdict === 'flag' ? '_flagged' : route === 'wado' ? '_withheld' : '_blocked'}`,
      partIndex: p.index,
      sopHash: p.record?.sopInstanceUidHash ?? (p.header?.sopInstanceUid ? hashUid(p.header.sopInstanceUid) : undefined),
      studyHash: p.header?.studyInstanceUid ? hashUid(p.header.studyInstanceUid) : undefined,
      verdict, ...(wouldBe ? { wouldBe } : {}), reasons: p.decision.reasons, status: p.record?.status, errorCode: p.record?.error?.code,
      pValues: p.record?.scores ? Object.fromEntries(Object.entries(p.record.scores).map(([k, v]) => [k, v.pValue])) : undefined,
      timings: p.record?.timings, bytes: p.stored.size, ...(stored ? { storedUpstream: stored(p) } : {}),
    };
    if (verdict === 'forward' && !wouldBe) log.info(entry, route === 'wado' ? 'retrieved instance returned' : 'instance forwarded');
    else if (verdict === 'forward') log.warn(entry, `observe mode: would have been ${wouldBe === 'block' ? 'blocked' : 'flagged'}; forwarded`);
    else log.warn(entry, verdict === 'flag' ? `${route === 'wado' ? 'retrieved instance flagged and returned' : 'instance flagged and forwarded'}` : route === 'wado' ? 'retrieved instance withheld' : 'instance blocked');
  }
  for (const group of studies) publish('studyDecided', { scope: ctx.scope, route, verdict: worstVerdict(group.map((p) => p.decision.verdict)) });
}
