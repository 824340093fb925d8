import * as path from 'node:path';
import type pino from 'pino';
import { openAuditStore, redactLocation, type AuditRoute, type AuditStore, type RecordDecisionInput } from '../audit';
import { stateDirOf, type WardenConfig } from '../config';
import { hashUid, readHeader } from '../dicom';
import { Quarantine } from '../quarantine';
import type { JudgedPart } from './judge';

/**
 * The production trail as the gateway uses it: every decision recorded in the audit store, the original bytes of
 * every blocked instance kept in quarantine, both durable before the sender is answered (a kill -9 right after a
 * block answer loses nothing). Records carry hashes (HMAC with the install key) and non-identifying attributes only.
 */
export interface Trail {
  audit: AuditStore;
  quarantine: Quarantine;
  /** Where the audit store lives, password redacted (for logs). */
  location: string;
  close(): Promise<void>;
}

/** Opens (and migrates) the audit store and the quarantine, reconciles crash leftovers, starts the sweeper. */
export async function openTrail(config: WardenConfig, logger: pino.Logger): Promise<Trail> {
  const state = stateDirOf(config);
  const location = config.audit.url ?? path.join(state, 'audit.sqlite');
  const audit = openAuditStore(location, { retentionDays: config.audit.retentionDays });
  const applied = await audit.migrate();
  if (applied.length) logger.info({ event: 'audit_migrated', migrations: applied }, 'audit store migrated');
  const quarantine = new Quarantine({
    dir: config.quarantine.dir ?? path.join(state, 'quarantine'),
    audit,
    discardGraceMs: config.quarantine.discardGraceMs,
    // a file put this recently is left alone by the sweeper (its record may still be on its way): never longer than the grace
    recentPutMs: Math.min(600_000, config.quarantine.discardGraceMs),
    // a file found without its record (the process died between the two): rebuilt from the bytes, hashes keyed
    identify: async (bytes, sha256) => {
      const header = readHeader(bytes);
      if (!header?.sopInstanceUid || !header.studyInstanceUid) return null;
      return {
        decision: { verdict: 'block', reasons: [{ signal: 'error', code: 'record_rebuilt_at_start' }] },
        identity: identityOf(header, bytes.length, sha256),
        context: { time: Date.now(), route: 'stow', requestId: 'reconcile', forwarded: false },
        quarantined: true,
      };
    },
  });
  const report = await quarantine.reconcile();
  const notable = report.tempFilesRemoved + report.adopted.length + report.orphanFiles.length + report.missing.length + report.staleReleasesFailed.length;
  if (notable) {
    logger.warn({
      event: 'quarantine_reconciled', tempFilesRemoved: report.tempFilesRemoved, adopted: report.adopted.length, orphanFiles: report.orphanFiles.length,
      missing: report.missing.length, staleReleasesFailed: report.staleReleasesFailed.length,
    }, 'quarantine reconciled at start-up');
  }
  const stopSweeper = quarantine.startSweeper(config.quarantine.sweepIntervalMs, (err) => logger.error({ event: 'quarantine_sweep_failed', err: { message: (err as Error).message } }, 'quarantine sweep failed'));
  return {
    audit, quarantine, location: redactLocation(location),
    async close() {
      stopSweeper();
      await audit.close();
    },
  };
}

function identityOf(header: { studyInstanceUid?: string; seriesInstanceUid?: string; sopInstanceUid?: string; sopClassUid?: string; modality?: string; transferSyntaxUid?: string }, size: number, sha256: string): RecordDecisionInput['identity'] {
  return {
    studyHash: hashUid(header.studyInstanceUid ?? ''),
    seriesHash: header.seriesInstanceUid ? hashUid(header.seriesInstanceUid) : null,
    sopHash: hashUid(header.sopInstanceUid ?? ''),
    sopClassUid: header.sopClassUid ?? null,
    modality: header.modality ?? null,
    transferSyntaxUid: header.transferSyntaxUid ?? null,
    sizeBytes: size,
    sha256,
  };
}

/** Whether a judged part is an instance the trail can record (it has a header and its bytes were kept). */
export function recordable(p: JudgedPart): boolean {
  return Boolean(p.header?.sopInstanceUid && p.header.studyInstanceUid && p.stored.sha256);
}

/**
 * Keeps the original bytes of the blocked instances (durably: fsynced before this resolves). Observe mode blocks
 * nothing, so it keeps nothing. Returns the indexes of the parts kept.
 */
export async function quarantineBlocked(trail: Trail, parts: JudgedPart[], onFailure: (p: JudgedPart, err: unknown) => void): Promise<Set<number>> {
  const kept = new Set<number>();
  await Promise.all(parts.filter((p) => p.decision.verdict === 'block' && recordable(p)).map(async (p) => {
    try {
      const file = p.stored.filePath;
      if (file) await trail.quarantine.putFile(file);
      else await trail.quarantine.put(await p.stored.read());
      kept.add(p.index);
    } catch (err) {
      // the sender is told the instance was refused either way, so it still holds the study; say loudly that no copy was kept
      onFailure(p, err);
    }
  }));
  return kept;
}

export interface RecordContext {
  route: AuditRoute;
  requestId: string;
  client: string;
  modelSha256: string;
  bundleSha256: string | null;
  upstreamStatus: number | null;
}

/** One audit record per recordable part, in one go; returns the record id per part index. */
export async function recordDecisions(trail: Trail, ctx: RecordContext, parts: JudgedPart[], outcome: (p: JudgedPart) => { forwarded: boolean; failureReason?: number },
  quarantined: ReadonlySet<number>): Promise<Map<number, string>> {
  const ids = new Map<number, string>();
  const now = Date.now();
  for (const p of parts.filter(recordable)) {
    const o = outcome(p);
    const rec = p.record;
    const id = await trail.audit.recordDecision({
      decision: {
        verdict: p.decision.verdict,
        reasons: p.decision.reasons.map((r) => ({ signal: r.signal, code: r.code, ...(r.detector ? { detector: r.detector } : {}), ...(r.pValue !== undefined ? { pValue: r.pValue } : {}), ...(r.threshold !== undefined ? { threshold: r.threshold } : {}) })),
        observed: p.decision.wouldBe ?? null,
        scores: Object.fromEntries(Object.entries(rec?.scores ?? {}).map(([k, s]) => [k, { score: s.score, pValue: s.pValue, signal: s.signal ?? 'domain' }])),
        prediction: rec?.prediction ? { label: rec.prediction.label, probability: rec.prediction.probability } : null,
        timings: rec?.timings ?? {},
      },
      identity: identityOf(p.header!, p.stored.size, p.stored.sha256!),
      context: {
        time: now, route: ctx.route, requestId: ctx.requestId, client: ctx.client, modelSha256: ctx.modelSha256, bundleSha256: ctx.bundleSha256,
        forwarded: o.forwarded, upstreamStatus: ctx.upstreamStatus, upstreamFailureReason: o.failureReason ?? null,
      },
      quarantined: quarantined.has(p.index),
    });
    ids.set(p.index, id);
  }
  return ids;
}
