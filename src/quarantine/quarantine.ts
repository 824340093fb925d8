/**
 * The quarantine: original bytes of blocked instances on disk (./files.ts), with the audit store as the source
 * of truth for their state. Release and discard are compare-and-set transitions in the database, so they are
 * exactly-once across processes that share the database and the folder:
 *
 *   quarantined ──release──▶ releasing ──▶ released
 *        │                      │
 *        │                      └────────▶ release_failed ──release──▶ releasing …
 *        └──discard──▶ discarded ◀──discard── release_failed
 *
 * Only the caller that wins the quarantined → releasing transition forwards the bytes; everyone else gets the
 * recorded outcome (waiting for it while a release is in flight). The sweeper deletes the bytes of discarded
 * (and released) items after a grace period; the records stay.
 */
import { randomUUID } from 'node:crypto';
import type { AuditRecord, AuditStore, QuarantineHolder, RecordDecisionInput } from '../audit';
import { WardenError, isWardenError } from '../core/errors';
import { QuarantineFiles, type DiskUsage, type PutResult } from './files';

/** What the injected upstream forward reports. */
export interface ForwardResult {
  ok: boolean;
  upstreamStatus: number | null;
  detail?: string;
}

/** Forwards the original bytes to the upstream (the gateway's STOW-RS client). */
export type ForwardFn = (bytes: Buffer, record: AuditRecord) => Promise<ForwardResult>;

export interface ReleaseOutcome {
  id: string;
  state: 'released' | 'release_failed' | 'releasing';
  /** true only for the one call that forwarded the bytes. */
  forwardedNow: boolean;
  upstreamStatus: number | null;
  detail: string | null;
  /** Epoch ms of the recorded outcome (null while still releasing elsewhere). */
  at: number | null;
}

export interface DiscardOutcome {
  id: string;
  state: 'discarded';
  /** false when it was already discarded (idempotent). */
  changed: boolean;
}

export interface SweepReport {
  /** Files deleted by this sweep. */
  deleted: number;
  bytes: number;
  /** Records whose bytes are now marked deleted. */
  records: number;
  /** Addresses left for a later sweep (still needed by another record, or put again recently). */
  kept: number;
}

export interface ReconcileReport {
  /** Interrupted puts removed from .tmp. */
  tempFilesRemoved: number;
  /** Files a stopped sweep had moved aside, put back because a record still needs them / dropped. */
  trashRestored: number;
  trashRemoved: number;
  /** Files without any record, adopted as new records through `identify`. */
  adopted: string[];
  /** Files without any record that could not be adopted (no `identify`, or it failed): left in place. */
  orphanFiles: string[];
  /** Files whose records all had their bytes deleted (a put that raced a sweep): removed. */
  garbageRemoved: string[];
  /** Released/discarded records whose file is gone: marked deleted. */
  markedDeleted: string[];
  /** Records that need bytes that are not there: cannot be repaired, reported. */
  missing: { id: string; sha256: string; state: string }[];
  /** Releases left in `releasing` by a process that stopped: now release_failed (retryable). */
  staleReleasesFailed: string[];
  /** Names under the folder that are not quarantine files (left alone). */
  strays: string[];
}

export interface QuarantineOptions {
  dir: string;
  audit: AuditStore;
  /** Bytes of a discarded item are deleted this long after the discard (default 7 days). */
  discardGraceMs?: number;
  /** Bytes of a released item are deleted this long after the release (default: discardGraceMs). */
  releasedGraceMs?: number;
  /** A file put (or put again) this recently is never deleted, so its record can still arrive (default 10 min). */
  recentPutMs?: number;
  /** A release still in flight after this long is taken for dead by reconcile (default 10 min). */
  releaseLeaseMs?: number;
  /** How long a second caller waits for a release in flight elsewhere before returning 'releasing' (default 30 s). */
  releaseWaitMs?: number;
  /** Temp files older than this are interrupted puts (default 1 h). */
  tempMaxAgeMs?: number;
  /**
   * Rebuilds a record for a file found without one (the process died between the put and the record): the
   * gateway decodes and hashes the identifiers with its secret. Without it such files are only reported.
   */
  identify?: (bytes: Buffer, sha256: string) => Promise<RecordDecisionInput | null>;
  now?: () => number;
}

const MIN = 60_000;
const DAY = 86_400_000;

function conflict(id: string, why: string): WardenError {
  return new WardenError('QUARANTINE_CONFLICT', `Instance ${id}: ${why}.`, { detail: { id } });
}

function requireText(value: unknown, field: string): string {
  if (typeof value !== 'string' || value.trim() === '') {
    throw new WardenError('AUDIT_INPUT_INVALID', `A ${field} is required.`, { detail: { field } });
  }
  return value.trim();
}

export class Quarantine {
  readonly files: QuarantineFiles;
  readonly audit: AuditStore;
  private readonly opts: Required<Omit<QuarantineOptions, 'identify' | 'dir' | 'audit'>> & Pick<QuarantineOptions, 'identify'>;
  private readonly inflight = new Map<string, Promise<ReleaseOutcome>>();

  constructor(options: QuarantineOptions) {
    this.files = new QuarantineFiles(options.dir);
    this.audit = options.audit;
    const discardGraceMs = options.discardGraceMs ?? 7 * DAY;
    this.opts = {
      discardGraceMs,
      releasedGraceMs: options.releasedGraceMs ?? discardGraceMs,
      recentPutMs: options.recentPutMs ?? 10 * MIN,
      releaseLeaseMs: options.releaseLeaseMs ?? 10 * MIN,
      releaseWaitMs: options.releaseWaitMs ?? 30_000,
      tempMaxAgeMs: options.tempMaxAgeMs ?? 60 * MIN,
      identify: options.identify,
      now: options.now ?? Date.now,
    };
    for (const [k, v] of Object.entries(this.opts)) {
      if (typeof v === 'number' && !(v >= 0)) throw new WardenError('CONFIG_INVALID', `Quarantine option ${k} must be zero or more (got ${v}).`);
    }
  }

  get dir(): string {
    return this.files.dir;
  }

  /** Keeps the original bytes durably; resolves only once they are fsynced under their sha256. */
  put(bytes: Uint8Array): Promise<PutResult> {
    return this.files.put(bytes);
  }

  /** As put, for an instance spooled to a file. */
  putFile(source: string): Promise<PutResult> {
    return this.files.putFile(source);
  }

  /** The kept bytes of a record, checked against their sha256. @throws AUDIT_RECORD_NOT_FOUND, QUARANTINE_CONFLICT, QUARANTINE_BYTES_MISSING */
  async bytesOf(id: string): Promise<Buffer> {
    const rec = await this.mustGet(id);
    if (!rec.quarantine) throw conflict(id, 'it was never quarantined');
    if (rec.quarantine.bytesDeletedAt !== null) throw conflict(id, 'its bytes were deleted after the grace period');
    return this.files.read(rec.sha256);
  }

  /**
   * Forwards the original bytes once. Concurrent and repeated calls — here or in another process sharing the
   * database — get the recorded outcome without forwarding again. A release_failed item may be released again.
   * @throws AUDIT_INPUT_INVALID (no actor or comment), AUDIT_RECORD_NOT_FOUND, QUARANTINE_CONFLICT (never
   * quarantined, discarded, or bytes deleted)
   */
  async release(id: string, actor: string, comment: string, forward: ForwardFn): Promise<ReleaseOutcome> {
    // No await before the in-flight map is consulted and filled: concurrent calls in this process share one release.
    const who = requireText(actor, 'actor');
    const why = requireText(comment, 'comment');
    const running = this.inflight.get(id);
    if (running) return running.then((o) => ({ ...o, forwardedNow: false }));
    const p = this.releaseOnce(id, who, why, forward).finally(() => this.inflight.delete(id));
    this.inflight.set(id, p);
    return p;
  }

  private async releaseOnce(id: string, actor: string, comment: string, forward: ForwardFn): Promise<ReleaseOutcome> {
    const rec = await this.mustGet(id);
    if (!rec.quarantine) throw conflict(id, 'it was never quarantined');
    const claimId = randomUUID();
    const claim = await this.audit.claimRelease(id, { claimId, actor, comment, at: this.opts.now() });
    if (!claim.claimed) return this.settledOutcome(claim.record);

    let result: ForwardResult;
    try {
      const bytes = await this.files.read(rec.sha256);
      result = await forward(bytes, rec);
    } catch (err) {
      const detail = isWardenError(err) ? `${err.code}: ${err.message}` : `forward failed: ${(err as Error)?.message ?? String(err)}`;
      result = { ok: false, upstreamStatus: null, detail };
    }
    const at = this.opts.now();
    const upstreamStatus = Number.isInteger(result.upstreamStatus) ? result.upstreamStatus : null;
    const completed = await this.audit.completeRelease(id, claimId, { ok: !!result.ok, upstreamStatus, detail: result.detail ?? null, actor, comment, at });
    if (!completed) {
      // reconcile took this release for dead while the upstream was still answering: keep what happened on record.
      await this.audit.recordAction({
        decisionId: id, action: 'note', actor: 'warden', at,
        comment: 'a release finished after its claim had expired', outcome: result.ok ? 'released' : 'release_failed', upstreamStatus, detail: result.detail ?? null,
      });
    }
    return { id, state: result.ok ? 'released' : 'release_failed', forwardedNow: true, upstreamStatus, detail: result.detail ?? null, at };
  }

  /** The outcome of a release someone else claimed: recorded, or awaited while in flight. */
  private async settledOutcome(rec: AuditRecord): Promise<ReleaseOutcome> {
    const deadline = this.opts.now() + this.opts.releaseWaitMs;
    let wait = 20;
    for (;;) {
      const q = rec.quarantine;
      if (!q) throw conflict(rec.id, 'it was never quarantined');
      if (q.state === 'discarded') throw conflict(rec.id, 'it was discarded');
      if (q.bytesDeletedAt !== null && q.state !== 'released') throw conflict(rec.id, 'its bytes were deleted');
      if (q.state === 'released' || q.state === 'release_failed') {
        return { id: rec.id, state: q.state, forwardedNow: false, upstreamStatus: q.release?.upstreamStatus ?? null, detail: q.release?.detail ?? null, at: q.release?.at ?? q.changedAt };
      }
      if (q.state === 'quarantined') throw conflict(rec.id, 'the release could not be claimed');
      if (this.opts.now() >= deadline) return { id: rec.id, state: 'releasing', forwardedNow: false, upstreamStatus: null, detail: 'a release is in flight elsewhere', at: null };
      await new Promise((r) => setTimeout(r, wait));
      wait = Math.min(500, wait * 2);
      rec = await this.mustGet(rec.id);
    }
  }

  /**
   * Marks the item discarded (its bytes go after the grace period). Discarding twice is a no-op.
   * @throws AUDIT_INPUT_INVALID, AUDIT_RECORD_NOT_FOUND, QUARANTINE_CONFLICT (never quarantined, released or releasing)
   */
  async discard(id: string, actor: string, reason: string): Promise<DiscardOutcome> {
    const res = await this.audit.discard(id, { actor: requireText(actor, 'actor'), comment: requireText(reason, 'reason'), at: this.opts.now() });
    if (res.claimed) return { id, state: 'discarded', changed: true };
    const q = res.record.quarantine;
    if (!q) throw conflict(id, 'it was never quarantined');
    if (q.state === 'discarded') return { id, state: 'discarded', changed: false };
    throw conflict(id, `it is ${q.state.replace('_', ' ')}`);
  }

  /** Deletes the bytes of discarded and released items past their grace period; records stay. */
  async sweep(): Promise<SweepReport> {
    const now = this.opts.now();
    const cutoffs = { discardedBefore: now - this.opts.discardGraceMs, releasedBefore: now - this.opts.releasedGraceMs };
    const report: SweepReport = { deleted: 0, bytes: 0, records: 0, kept: 0 };
    for (const sha of await this.audit.sweepCandidates(cutoffs)) {
      const holders = (await this.audit.quarantineHolders(sha)).filter((h) => h.bytesDeletedAt === null);
      const sweepable = (h: QuarantineHolder) => (h.state === 'discarded' && h.changedAt < cutoffs.discardedBefore)
        || (h.state === 'released' && h.changedAt < cutoffs.releasedBefore);
      if (!holders.every(sweepable)) {
        report.kept++;
        continue;
      }
      const ids = holders.map((h) => h.id);
      const st = await this.files.stat(sha);
      if (st && st.mtimeMs > now - this.opts.recentPutMs) {
        report.kept++;
        continue;
      }
      if (st) {
        const trashed = await this.files.moveToTrash(sha);
        if (trashed) {
          // A put of the same bytes between our check and the move refreshed the file's time: give it back.
          if ((await this.files.mtimeOf(trashed)) > now - this.opts.recentPutMs) {
            await this.files.restoreFromTrash(trashed, sha);
            report.kept++;
            continue;
          }
          await this.files.removeTrashed(trashed);
          report.deleted++;
          report.bytes += st.size;
        }
      }
      await this.audit.markBytesDeleted(ids, now);
      report.records += ids.length;
    }
    return report;
  }

  /** Sweeps every `intervalMs` (timer unref'd); returns a stop function. Errors go to `onError`. */
  startSweeper(intervalMs: number, onError: (err: unknown) => void = () => undefined): () => void {
    let running = false;
    const timer = setInterval(() => {
      if (running) return;
      running = true;
      this.sweep().catch(onError).finally(() => { running = false; });
    }, intervalMs);
    timer.unref();
    return () => clearInterval(timer);
  }

  /**
   * Start-up check of files against records, safe to run on every start and from several processes:
   * interrupted puts removed, a stopped sweep's files put back or dropped, stale releases failed (retryable),
   * files without records adopted (with `identify`) or reported, records without files marked or reported.
   */
  async reconcile(): Promise<ReconcileReport> {
    const now = this.opts.now();
    const report: ReconcileReport = {
      tempFilesRemoved: 0, trashRestored: 0, trashRemoved: 0, adopted: [], orphanFiles: [], garbageRemoved: [],
      markedDeleted: [], missing: [], staleReleasesFailed: [], strays: [],
    };
    report.staleReleasesFailed = await this.audit.failStaleReleases(
      now - this.opts.releaseLeaseMs,
      'release interrupted: the process handling it stopped before the outcome was recorded; release again or discard',
      now,
    );
    for (const t of await this.files.temps()) {
      if (t.mtimeMs <= now - this.opts.tempMaxAgeMs) {
        await this.files.removeTemp(t.path);
        report.tempFilesRemoved++;
      }
    }
    let kept = await this.audit.keptQuarantineAddresses();
    for (const t of await this.files.trash()) {
      if (t.sha256 && kept.has(t.sha256) && !(await this.files.stat(t.sha256))) {
        await this.files.restoreFromTrash(t.path, t.sha256);
        report.trashRestored++;
      } else {
        await this.files.removeTrashed(t.path);
        report.trashRemoved++;
      }
    }

    const { files, strays } = await this.files.list();
    report.strays = strays;
    const onDisk = new Set<string>();
    for (const f of files) {
      onDisk.add(f.sha256);
      if (kept.has(f.sha256)) continue;
      if (f.mtimeMs > now - this.opts.recentPutMs) continue; // a put whose record may still be on its way
      const holders = await this.audit.quarantineHolders(f.sha256);
      if (holders.length > 0 && holders.every((h) => h.bytesDeletedAt !== null)) {
        const trashed = await this.files.moveToTrash(f.sha256);
        if (trashed) await this.files.removeTrashed(trashed);
        report.garbageRemoved.push(f.sha256);
        continue;
      }
      if (holders.length > 0) continue; // a holder appeared since we listed the kept addresses
      if (await this.adopt(f.sha256)) report.adopted.push(f.sha256);
      else report.orphanFiles.push(f.sha256);
    }

    kept = await this.audit.keptQuarantineAddresses();
    for (const sha of kept) {
      if (onDisk.has(sha) || (await this.files.stat(sha))) continue;
      for (const h of await this.audit.quarantineHolders(sha)) {
        if (h.bytesDeletedAt !== null) continue;
        if (h.state === 'discarded' || h.state === 'released') {
          await this.audit.markBytesDeleted([h.id], now);
          report.markedDeleted.push(h.id);
        } else {
          report.missing.push({ id: h.id, sha256: sha, state: h.state });
        }
      }
    }
    return report;
  }

  private async adopt(sha256: string): Promise<boolean> {
    if (!this.opts.identify) return false;
    try {
      const bytes = await this.files.read(sha256);
      const input = await this.opts.identify(bytes, sha256);
      if (!input || input.identity.sha256 !== sha256) return false;
      await this.audit.recordDecision({ ...input, quarantined: true });
      return true;
    } catch {
      return false;
    }
  }

  /** Bytes and count of kept files and the volume's free space (for metrics). */
  usage(): Promise<DiskUsage> {
    return this.files.usage();
  }

  private async mustGet(id: string): Promise<AuditRecord> {
    const rec = await this.audit.get(id);
    if (!rec) throw new WardenError('AUDIT_RECORD_NOT_FOUND', `No audit record has the id ${String(id).slice(0, 64)}.`, { detail: { id } });
    return rec;
  }
}
