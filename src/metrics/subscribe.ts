import { isErrorCode } from '../core/errors';
import { subscribe, type EventScope } from '../core/events';
import { flagLabels, type Policy } from '../policy';
import type { DriftWatch } from './drift';
import type { WardenMetrics } from './metrics';

const STAGE_NAME = /^[a-z_]{1,32}$/;
const DETECTOR_NAME = /^[a-z0-9_+]{1,64}$/;

/**
 * Turns one gateway's events into metric observations. Returns the function that unsubscribes (called when the
 * gateway closes). Every metric update in Warden happens here.
 */
export function subscribeMetrics(m: WardenMetrics, scope: EventScope, opts: { drift?: DriftWatch; policy?: () => Policy } = {}): () => void {
  const { drift, policy } = opts;
  const off = [
    subscribe('instanceScanned', scope, (e) => {
      if (drift && policy && e.scores) {
        const p = policy();
        drift.observe(Object.entries(e.scores).flatMap(([detector, s]) => (s.signal ? [{ signal: s.signal, detector, pValue: s.pValue, nominal: p[s.signal].flagFpr }] : [])));
      }
      for (const [stage, ms] of Object.entries(e.timings)) if (Number.isFinite(ms) && STAGE_NAME.test(stage)) m.stageDuration.observe({ stage }, ms / 1000);
      for (const [detector, s] of Object.entries(e.scores ?? {})) {
        if (!DETECTOR_NAME.test(detector)) continue;
        if (Number.isFinite(s.score)) m.detectorScore.observe({ detector }, s.score);
        if (Number.isFinite(s.pValue)) m.detectorPValue.observe({ detector }, s.pValue);
      }
    }),
    subscribe('instanceDecided', scope, (e) => {
      m.instances.inc({ route: e.route, verdict: e.decision.verdict });
      if (e.unscanned) m.unscanned.inc({ reason: e.unscanned });
      if (e.decision.reasons.some((r) => r.code === 'tags_out_of_scope')) m.scannedByPixels.inc();
      if (e.decision.verdict === 'flag') for (const { signal, detector } of flagLabels(e.decision.reasons)) m.flagged.inc({ signal, detector });
      if (e.decision.wouldBe) m.observed.inc({ route: e.route, verdict: e.decision.wouldBe });
      if (e.spooled) m.spooledParts.inc();
      // an instance that could not be scanned counts its error once, whichever stage failed
      for (const r of e.decision.reasons) if (r.signal === 'error' && isErrorCode(r.code)) m.errors.inc({ code: r.code });
    }),
    subscribe('studyDecided', scope, (e) => { m.studies.inc({ route: e.route, verdict: e.verdict }); }),
    subscribe('requestAnswered', scope, (e) => {
      m.requests.inc({ route: e.route, status: String(e.status) });
      if (e.code) m.errors.inc({ code: e.code });
      if (e.saturated) m.saturated.inc();
      if (e.bodyBytes) m.receivedBytes.inc({ route: e.route }, e.bodyBytes);
      for (const [stage, s] of Object.entries(e.stages ?? {})) if (Number.isFinite(s)) m.stageDuration.observe({ stage }, s);
    }),
    subscribe('upstreamAnswered', scope, (e) => {
      m.upstreamRequests.inc({ method: e.method, status: String(e.status) });
      m.upstreamDuration.observe({ method: e.method }, e.seconds);
      if (e.status === 'error') m.errors.inc({ code: 'UPSTREAM_UNAVAILABLE' });
    }),
    subscribe('error', scope, (e) => { m.errors.inc({ code: e.code }); }),
    subscribe('authFailed', scope, (e) => { m.authFailures.inc({ route: e.route, status: String(e.status) }); }),
  ];
  return () => { for (const f of off) f(); };
}
