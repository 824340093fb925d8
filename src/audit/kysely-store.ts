/**
 * The AuditStore over kysely: one set of queries for SQLite and PostgreSQL (the dialect-specific parts, opening
 * and connection settings, live in ./sqlite.ts and ./postgres.ts). State transitions of quarantined items are
 * single UPDATE … WHERE state IN (…) statements: both databases apply them atomically per row, so two
 * processes racing on one item see exactly one winner.
 */
import { randomUUID } from 'node:crypto';
import { Migrator, sql, type Kysely, type Selectable, type Transaction } from 'kysely';
import { WardenError, toWardenError } from '../core/errors';
import { MIGRATION_LOCK_TABLE, MIGRATION_TABLE, migrationProvider } from './migrations';
import type { AuditDatabase, DecisionsTable } from './schema';
import type {
  AuditAction, AuditActionKind, AuditPage, AuditQuery, AuditRecord, AuditStore, ClaimResult, DeadLetter,
  DeadLetterInput, MigrationStatus, PruneResult, QuarantineHolder, QuarantineState, RecordActionInput,
  RecordDecisionInput, StoredDetectorScore,
} from './types';
import {
  ROUTES, SIGNALS, VERDICTS, digestField, finiteOrNull, hashField, intOrNull, modalityField, oneOf,
  optionalHashField, optionalWordField, reasonsField, sha256Field, statesField, textField, timeMs, uidField,
  wordField,
} from './validate';

export interface AuditStoreOptions {
  /** Default age, in days, past which prune() deletes records (default 365). */
  retentionDays?: number;
  /** Clock, epoch ms (tests). */
  now?: () => number;
}

const DAY_MS = 86_400_000;
const ACTION_KINDS: readonly AuditActionKind[] = ['release', 'discard', 'note'];

type DecisionRow = Selectable<DecisionsTable>;

function parseJson<T>(text: string | null, fallback: T): T {
  if (text === null) return fallback;
  try {
    return JSON.parse(text) as T;
  } catch {
    return fallback;
  }
}

function toRecord(row: DecisionRow): AuditRecord {
  const n = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));
  return {
    id: row.id,
    time: Number(row.time_ms),
    route: row.route as AuditRecord['route'],
    requestId: row.request_id,
    client: row.client,
    modelSha256: row.model_sha256,
    bundleSha256: row.bundle_sha256,
    studyHash: row.study_hash,
    seriesHash: row.series_hash,
    sopHash: row.sop_hash,
    sopClassUid: row.sop_class_uid,
    modality: row.modality,
    transferSyntaxUid: row.transfer_syntax_uid,
    sizeBytes: Number(row.size_bytes),
    sha256: row.sha256,
    verdict: row.verdict as AuditRecord['verdict'],
    observedVerdict: row.observed_verdict as AuditRecord['observedVerdict'],
    prediction: row.prediction_label === null ? null : { label: row.prediction_label, probability: Number(row.prediction_probability) },
    reasons: parseJson(row.reasons_json, []),
    scores: parseJson(row.scores_json, {}),
    timings: parseJson(row.timings_json, {}),
    forwarded: Number(row.forwarded) === 1,
    upstreamStatus: n(row.upstream_status),
    upstreamFailureReason: n(row.upstream_failure_reason),
    quarantine: row.quarantine_state === null ? null : {
      state: row.quarantine_state as QuarantineState,
      changedAt: Number(row.quarantine_changed_at_ms),
      bytesDeletedAt: n(row.bytes_deleted_at_ms),
      release: row.release_at_ms === null ? null : {
        upstreamStatus: n(row.release_upstream_status),
        detail: row.release_detail,
        at: n(row.release_at_ms),
      },
    },
  };
}

function toAction(row: AuditDatabase['actions']): AuditAction {
  return {
    id: row.id,
    decisionId: row.decision_id,
    at: Number(row.at_ms),
    action: row.action as AuditActionKind,
    actor: row.actor,
    comment: row.comment,
    outcome: row.outcome,
    upstreamStatus: row.upstream_status === null ? null : Number(row.upstream_status),
    detail: row.detail,
  };
}

/** Upstream detail strings are bounded and single-line before they are stored. */
function detailText(detail: string | null | undefined): string | null {
  if (detail === undefined || detail === null) return null;
  return detail.replace(/\s+/g, ' ').slice(0, 500);
}

export class KyselyAuditStore implements AuditStore {
  readonly db: Kysely<AuditDatabase>;
  readonly dialect: 'sqlite' | 'postgres';
  readonly retentionDays: number;
  private readonly now: () => number;
  private closed = false;

  constructor(db: Kysely<AuditDatabase>, dialect: 'sqlite' | 'postgres', options: AuditStoreOptions = {}) {
    this.db = db;
    this.dialect = dialect;
    this.retentionDays = options.retentionDays ?? 365;
    if (!(this.retentionDays > 0)) throw new WardenError('CONFIG_INVALID', `Audit retentionDays must be positive (got ${this.retentionDays}).`);
    this.now = options.now ?? Date.now;
  }

  private migrator(): Migrator {
    return new Migrator({
      db: this.db,
      provider: migrationProvider,
      migrationTableName: MIGRATION_TABLE,
      migrationLockTableName: MIGRATION_LOCK_TABLE,
    });
  }

  /**
   * All pending migrations run in one transaction. On PostgreSQL kysely serialises concurrent migrators with an
   * advisory lock; its SQLite lock is a no-op (it assumes one connection), so two processes opening one fresh
   * file race: the loser's transaction fails and rolls back whole, and a retry finds the work done.
   */
  async migrate(): Promise<string[]> {
    for (let attempt = 1; ; attempt++) {
      const { error, results } = await this.migrator().migrateToLatest();
      if (!error) return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
      if (attempt >= 5) throw toWardenError(error, 'AUDIT_STORE_FAILED', `The audit store's migrations failed (${this.dialect}).`);
      await new Promise((r) => setTimeout(r, 25 * 2 ** attempt));
    }
  }

  /** Migrates up or down to exactly this migration (tests of upgrades; operators rolling back). */
  async migrateTo(name: string): Promise<string[]> {
    const { error, results } = await this.migrator().migrateTo(name);
    if (error) throw toWardenError(error, 'AUDIT_STORE_FAILED', `The audit store could not migrate to ${name}.`);
    return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
  }

  async migrations(): Promise<MigrationStatus[]> {
    const list = await this.migrator().getMigrations();
    return list.map((m) => ({ name: m.name, executedAt: m.executedAt ?? null }));
  }

  async recordDecision(input: RecordDecisionInput): Promise<string> {
    const { decision, identity, context } = input;
    if (!decision || !identity || !context) throw new WardenError('AUDIT_INPUT_INVALID', 'An audit record needs a decision, an identity and a context.');
    const reasons = reasonsField(decision.reasons);
    const scores: Record<string, StoredDetectorScore> = {};
    for (const [name, s] of Object.entries(decision.scores ?? {})) {
      wordField(name, 'decision.scores (detector name)');
      scores[name] = { score: finiteOrNull(s.score), pValue: finiteOrNull(s.pValue), signal: oneOf(s.signal, ['adversarial', 'domain'] as const, `decision.scores.${name}.signal`) };
    }
    const timings: Record<string, number> = {};
    for (const [stage, ms] of Object.entries(decision.timings ?? {})) {
      wordField(stage, 'decision.timings (stage name)');
      const v = finiteOrNull(ms);
      if (v !== null) timings[stage] = v;
    }
    const observed = decision.observed === undefined || decision.observed === null ? null
      : oneOf(typeof decision.observed === 'string' ? decision.observed : decision.observed.verdict, VERDICTS, 'decision.observed');
    const prediction = decision.prediction ?? null;
    if (prediction !== null && typeof prediction.label !== 'string') throw new WardenError('AUDIT_INPUT_INVALID', 'Audit field decision.prediction.label must be a text.');
    if (prediction !== null && prediction.label.length > 64) throw new WardenError('AUDIT_INPUT_INVALID', 'Audit field decision.prediction.label must be at most 64 characters.');
    const sizeBytes = intOrNull(identity.sizeBytes, 'identity.sizeBytes');
    if (sizeBytes === null || sizeBytes < 0) throw new WardenError('AUDIT_INPUT_INVALID', 'Audit field identity.sizeBytes must be a non-negative integer.');
    const client = context.client ?? null;
    if (client !== null && (typeof client !== 'string' || client.length > 128)) throw new WardenError('AUDIT_INPUT_INVALID', 'Audit field context.client must be a token name (at most 128 characters).');
    const requestId = context.requestId;
    if (typeof requestId !== 'string' || requestId === '' || requestId.length > 128) throw new WardenError('AUDIT_INPUT_INVALID', 'Audit field context.requestId must be a non-empty text (at most 128 characters).');
    const time = timeMs(context.time, 'context.time');
    const id = randomUUID();
    const row: DecisionsTable = {
      id,
      time_ms: time,
      route: oneOf(context.route, ROUTES, 'context.route'),
      request_id: requestId,
      client,
      model_sha256: digestField(context.modelSha256, 'context.modelSha256'),
      bundle_sha256: digestField(context.bundleSha256, 'context.bundleSha256'),
      study_hash: hashField(identity.studyHash, 'identity.studyHash'),
      series_hash: optionalHashField(identity.seriesHash, 'identity.seriesHash'),
      sop_hash: hashField(identity.sopHash, 'identity.sopHash'),
      sop_class_uid: uidField(identity.sopClassUid, 'identity.sopClassUid'),
      modality: modalityField(identity.modality),
      transfer_syntax_uid: uidField(identity.transferSyntaxUid, 'identity.transferSyntaxUid'),
      size_bytes: sizeBytes,
      sha256: sha256Field(identity.sha256, 'identity.sha256'),
      verdict: oneOf(decision.verdict, VERDICTS, 'decision.verdict'),
      observed_verdict: observed,
      prediction_label: prediction?.label ?? null,
      prediction_probability: prediction ? finiteOrNull(prediction.probability) : null,
      reasons_json: JSON.stringify(reasons),
      scores_json: JSON.stringify(scores),
      timings_json: JSON.stringify(timings),
      forwarded: context.forwarded ? 1 : 0,
      upstream_status: intOrNull(context.upstreamStatus, 'context.upstreamStatus'),
      upstream_failure_reason: intOrNull(context.upstreamFailureReason, 'context.upstreamFailureReason'),
      quarantine_state: input.quarantined ? 'quarantined' : null,
      quarantine_changed_at_ms: input.quarantined ? time : null,
      bytes_deleted_at_ms: null,
      release_claim: null,
      release_claimed_at_ms: null,
      release_upstream_status: null,
      release_detail: null,
      release_at_ms: null,
    };
    await this.guard('record a decision', () => this.db.transaction().execute(async (trx) => {
      await trx.insertInto('decisions').values(row).execute();
      if (reasons.length) {
        await trx.insertInto('decision_reasons').values(reasons.map((r, ordinal) => ({
          decision_id: id, ordinal, signal: r.signal, code: r.code, detector: r.detector ?? null,
          p_value: r.pValue ?? null, threshold: r.threshold ?? null,
        }))).execute();
      }
      const names = Object.keys(scores);
      if (names.length) {
        await trx.insertInto('decision_scores').values(names.map((detector) => ({
          decision_id: id, detector, score: scores[detector].score, p_value: scores[detector].pValue, signal: scores[detector].signal,
        }))).execute();
      }
    }));
    return id;
  }

  private actionRow(input: RecordActionInput) {
    return {
      id: randomUUID(),
      decision_id: input.decisionId,
      at_ms: timeMs(input.at, 'action.at', this.now()),
      action: oneOf(input.action, ACTION_KINDS, 'action.action'),
      actor: textField(input.actor, 'action.actor', 128),
      comment: textField(input.comment, 'action.comment'),
      outcome: optionalWordField(input.outcome, 'action.outcome'),
      upstream_status: intOrNull(input.upstreamStatus, 'action.upstreamStatus'),
      detail: detailText(input.detail),
    };
  }

  async recordAction(input: RecordActionInput): Promise<AuditAction> {
    const row = this.actionRow(input);
    await this.guard('record an action', () => this.db.transaction().execute(async (trx) => {
      await this.requireRecord(trx, input.decisionId);
      await trx.insertInto('actions').values(row).execute();
    }));
    return toAction(row);
  }

  async recordDeadLetter(input: DeadLetterInput): Promise<string> {
    const id = randomUUID();
    const attempts = intOrNull(input.attempts, 'deadLetter.attempts');
    if (attempts === null || attempts < 0) throw new WardenError('AUDIT_INPUT_INVALID', 'Audit field deadLetter.attempts must be a non-negative integer.');
    if (typeof input.target !== 'string' || input.target.length > 500) throw new WardenError('AUDIT_INPUT_INVALID', 'Audit field deadLetter.target must be a text of at most 500 characters.');
    let payload: string;
    try {
      payload = JSON.stringify(input.payload ?? null);
    } catch (err) {
      throw new WardenError('AUDIT_INPUT_INVALID', 'Audit field deadLetter.payload must be serialisable as JSON.', { cause: err });
    }
    await this.guard('record a dead letter', () => this.db.insertInto('dead_letters').values({
      id,
      at_ms: timeMs(input.at, 'deadLetter.at', this.now()),
      channel: wordField(input.channel, 'deadLetter.channel'),
      event_type: wordField(input.eventType, 'deadLetter.eventType'),
      target: input.target,
      payload_json: payload,
      attempts,
      last_error: detailText(input.lastError),
      last_status: intOrNull(input.lastStatus, 'deadLetter.lastStatus'),
      decision_id: input.decisionId ?? null,
    }).execute());
    return id;
  }

  async listDeadLetters(opts: { limit?: number; offset?: number } = {}): Promise<{ items: DeadLetter[]; total: number }> {
    const { limit, offset } = pageOf(opts);
    const [rows, count] = await Promise.all([
      this.db.selectFrom('dead_letters').selectAll().orderBy('at_ms', 'desc').orderBy('id').limit(limit).offset(offset).execute(),
      this.db.selectFrom('dead_letters').select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow(),
    ]);
    return {
      total: Number(count.n),
      items: rows.map((r) => ({
        id: r.id, at: Number(r.at_ms), channel: r.channel, eventType: r.event_type, target: r.target,
        payload: parseJson(r.payload_json, null), attempts: Number(r.attempts), lastError: r.last_error,
        lastStatus: r.last_status === null ? null : Number(r.last_status), decisionId: r.decision_id,
      })),
    };
  }

  async query(q: AuditQuery = {}): Promise<AuditPage> {
    const { limit, offset } = pageOf(q);
    let base = this.db.selectFrom('decisions');
    if (q.from !== undefined) base = base.where('time_ms', '>=', timeMs(q.from, 'query.from'));
    if (q.to !== undefined) base = base.where('time_ms', '<', timeMs(q.to, 'query.to'));
    if (q.verdict !== undefined) {
      const list = (Array.isArray(q.verdict) ? q.verdict : [q.verdict]).map((v, i) => oneOf(v, VERDICTS, `query.verdict[${i}]`));
      base = base.where('verdict', 'in', list);
    }
    if (q.studyHash !== undefined) base = base.where('study_hash', '=', hashField(q.studyHash, 'query.studyHash'));
    if (q.route !== undefined) base = base.where('route', '=', oneOf(q.route, ROUTES, 'query.route'));
    if (q.status !== undefined) base = base.where('quarantine_state', 'in', statesField(q.status));
    if (q.signal !== undefined) {
      const signal = oneOf(q.signal, SIGNALS, 'query.signal');
      base = base.where((eb) => eb.exists(eb.selectFrom('decision_reasons as r').select(sql<number>`1`.as('one'))
        .whereRef('r.decision_id', '=', 'decisions.id').where('r.signal', '=', signal)));
    }
    if (q.detector !== undefined) {
      const detector = wordField(q.detector, 'query.detector');
      base = base.where((eb) => eb.exists(eb.selectFrom('decision_reasons as r').select(sql<number>`1`.as('one'))
        .whereRef('r.decision_id', '=', 'decisions.id').where('r.detector', '=', detector)));
    }
    const order = q.order === 'asc' ? 'asc' : 'desc';
    const [rows, count] = await this.guard('query', () => Promise.all([
      base.selectAll().orderBy('time_ms', order).orderBy('id', order).limit(limit).offset(offset).execute(),
      base.select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow(),
    ]));
    return { items: rows.map(toRecord), total: Number(count.n), limit, offset };
  }

  async get(id: string): Promise<AuditRecord | null> {
    if (typeof id !== 'string' || id.length > 64) return null;
    const row = await this.db.selectFrom('decisions').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) return null;
    const actions = await this.db.selectFrom('actions').selectAll().where('decision_id', '=', id).orderBy('at_ms').orderBy('id').execute();
    return { ...toRecord(row), actions: actions.map(toAction) };
  }

  async prune(opts: { olderThanDays?: number; now?: Date | number } = {}): Promise<PruneResult> {
    const days = opts.olderThanDays ?? this.retentionDays;
    if (!(days >= 0)) throw new WardenError('USAGE', `Retention must be zero or more days (got ${days}).`);
    const before = timeMs(opts.now, 'prune.now', this.now()) - days * DAY_MS;
    return this.guard('prune', () => this.db.transaction().execute(async (trx) => {
      // Records whose bytes are still on disk stay until the quarantine lets go of them.
      const doomed = trx.selectFrom('decisions').select('id').where('time_ms', '<', before).where((eb) => eb.or([
        eb('quarantine_state', 'is', null),
        eb('bytes_deleted_at_ms', 'is not', null),
      ]));
      const actions = await trx.deleteFrom('actions').where('decision_id', 'in', doomed).executeTakeFirst();
      await trx.deleteFrom('decision_reasons').where('decision_id', 'in', doomed).execute();
      await trx.deleteFrom('decision_scores').where('decision_id', 'in', doomed).execute();
      const decisions = await trx.deleteFrom('decisions').where('time_ms', '<', before).where((eb) => eb.or([
        eb('quarantine_state', 'is', null),
        eb('bytes_deleted_at_ms', 'is not', null),
      ])).executeTakeFirst();
      const dead = await trx.deleteFrom('dead_letters').where('at_ms', '<', before).executeTakeFirst();
      return {
        before,
        decisions: Number(decisions.numDeletedRows),
        actions: Number(actions.numDeletedRows),
        deadLetters: Number(dead.numDeletedRows),
      };
    }));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.db.destroy();
  }

  async claimRelease(id: string, claim: { claimId: string; actor: string; comment: string; at?: number }): Promise<ClaimResult> {
    textField(claim.actor, 'actor', 128);
    textField(claim.comment, 'comment');
    const at = claim.at ?? this.now();
    const res = await this.guard('claim a release', () => this.db.updateTable('decisions')
      .set({ quarantine_state: 'releasing', quarantine_changed_at_ms: at, release_claim: claim.claimId, release_claimed_at_ms: at })
      .where('id', '=', id)
      .where('quarantine_state', 'in', ['quarantined', 'release_failed'])
      .where('bytes_deleted_at_ms', 'is', null)
      .executeTakeFirst());
    if (Number(res.numUpdatedRows) === 1) return { claimed: true };
    return { claimed: false, record: await this.mustGet(id) };
  }

  async completeRelease(
    id: string,
    claimId: string,
    outcome: { ok: boolean; upstreamStatus: number | null; detail?: string | null; actor: string; comment: string; at?: number },
  ): Promise<boolean> {
    const at = outcome.at ?? this.now();
    const state: QuarantineState = outcome.ok ? 'released' : 'release_failed';
    const upstreamStatus = intOrNull(outcome.upstreamStatus, 'upstreamStatus');
    const detail = detailText(outcome.detail);
    const action = this.actionRow({ decisionId: id, action: 'release', actor: outcome.actor, comment: outcome.comment, at, outcome: state, upstreamStatus, detail });
    return this.guard('complete a release', () => this.db.transaction().execute(async (trx) => {
      const res = await trx.updateTable('decisions')
        .set({
          quarantine_state: state, quarantine_changed_at_ms: at, release_claim: null,
          release_upstream_status: upstreamStatus, release_detail: detail, release_at_ms: at,
        })
        .where('id', '=', id).where('quarantine_state', '=', 'releasing').where('release_claim', '=', claimId)
        .executeTakeFirst();
      if (Number(res.numUpdatedRows) !== 1) return false;
      await trx.insertInto('actions').values(action).execute();
      return true;
    }));
  }

  async discard(id: string, input: { actor: string; comment: string; at?: number }): Promise<ClaimResult> {
    const at = input.at ?? this.now();
    const action = this.actionRow({ decisionId: id, action: 'discard', actor: input.actor, comment: input.comment, at, outcome: 'discarded' });
    const changed = await this.guard('discard', () => this.db.transaction().execute(async (trx) => {
      const res = await trx.updateTable('decisions')
        .set({ quarantine_state: 'discarded', quarantine_changed_at_ms: at })
        .where('id', '=', id).where('quarantine_state', 'in', ['quarantined', 'release_failed'])
        .executeTakeFirst();
      if (Number(res.numUpdatedRows) !== 1) return false;
      await trx.insertInto('actions').values(action).execute();
      return true;
    }));
    if (changed) return { claimed: true };
    return { claimed: false, record: await this.mustGet(id) };
  }

  async failStaleReleases(claimedBefore: number, detail: string, at = this.now()): Promise<string[]> {
    const stale = await this.db.selectFrom('decisions').select(['id', 'release_claim'])
      .where('quarantine_state', '=', 'releasing').where('release_claimed_at_ms', '<', claimedBefore).execute();
    const failed: string[] = [];
    for (const s of stale) {
      const ok = await this.db.transaction().execute(async (trx) => {
        const res = await trx.updateTable('decisions')
          .set({ quarantine_state: 'release_failed', quarantine_changed_at_ms: at, release_claim: null, release_detail: detailText(detail), release_at_ms: at, release_upstream_status: null })
          .where('id', '=', s.id).where('quarantine_state', '=', 'releasing').where('release_claim', s.release_claim === null ? 'is' : '=', s.release_claim)
          .executeTakeFirst();
        if (Number(res.numUpdatedRows) !== 1) return false;
        await trx.insertInto('actions').values(this.actionRow({ decisionId: s.id, action: 'release', actor: 'warden', comment: detail, at, outcome: 'release_failed', detail })).execute();
        return true;
      });
      if (ok) failed.push(s.id);
    }
    return failed;
  }

  async quarantineHolders(sha256: string): Promise<QuarantineHolder[]> {
    const rows = await this.db.selectFrom('decisions')
      .select(['id', 'sha256', 'size_bytes', 'quarantine_state', 'quarantine_changed_at_ms', 'bytes_deleted_at_ms'])
      .where('sha256', '=', sha256Field(sha256, 'sha256')).where('quarantine_state', 'is not', null).execute();
    return rows.map((r) => ({
      id: r.id, sha256: r.sha256, sizeBytes: Number(r.size_bytes), state: r.quarantine_state as QuarantineState,
      changedAt: Number(r.quarantine_changed_at_ms), bytesDeletedAt: r.bytes_deleted_at_ms === null ? null : Number(r.bytes_deleted_at_ms),
    }));
  }

  async keptQuarantineAddresses(): Promise<Set<string>> {
    const rows = await this.db.selectFrom('decisions').select('sha256').distinct()
      .where('quarantine_state', 'is not', null).where('bytes_deleted_at_ms', 'is', null).execute();
    return new Set(rows.map((r) => r.sha256));
  }

  async sweepCandidates(cutoffs: { discardedBefore: number; releasedBefore: number }, limit = 1000): Promise<string[]> {
    const rows = await this.db.selectFrom('decisions').select('sha256').distinct()
      .where('bytes_deleted_at_ms', 'is', null)
      .where((eb) => eb.or([
        eb.and([eb('quarantine_state', '=', 'discarded'), eb('quarantine_changed_at_ms', '<', cutoffs.discardedBefore)]),
        eb.and([eb('quarantine_state', '=', 'released'), eb('quarantine_changed_at_ms', '<', cutoffs.releasedBefore)]),
      ]))
      .limit(limit).execute();
    return rows.map((r) => r.sha256);
  }

  async markBytesDeleted(ids: readonly string[], at = this.now()): Promise<void> {
    if (ids.length === 0) return;
    await this.db.updateTable('decisions').set({ bytes_deleted_at_ms: at })
      .where('id', 'in', [...ids]).where('bytes_deleted_at_ms', 'is', null).execute();
  }

  private async requireRecord(trx: Transaction<AuditDatabase>, id: string): Promise<void> {
    const row = await trx.selectFrom('decisions').select('id').where('id', '=', id).executeTakeFirst();
    if (!row) throw new WardenError('AUDIT_RECORD_NOT_FOUND', `No audit record has the id ${id}.`, { detail: { id } });
  }

  private async mustGet(id: string): Promise<AuditRecord> {
    const rec = await this.get(id);
    if (!rec) throw new WardenError('AUDIT_RECORD_NOT_FOUND', `No audit record has the id ${String(id).slice(0, 64)}.`, { detail: { id } });
    return rec;
  }

  /** Database failures become AUDIT_STORE_FAILED; typed errors pass through. */
  private async guard<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw toWardenError(err, 'AUDIT_STORE_FAILED', `The audit store could not ${what} (${this.dialect}).`);
    }
  }
}

function pageOf(q: { limit?: number; offset?: number }): { limit: number; offset: number } {
  const limit = q.limit ?? 50;
  const offset = q.offset ?? 0;
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new WardenError('AUDIT_INPUT_INVALID', `Page size must be an integer from 1 to 1000 (got ${limit}).`);
  if (!Number.isInteger(offset) || offset < 0) throw new WardenError('AUDIT_INPUT_INVALID', `Page offset must be a non-negative integer (got ${offset}).`);
  return { limit, offset };
}
