import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { sql } from 'kysely';
import { AUDIT_MIGRATIONS, openPostgresAuditStore, openSqliteAuditStore, type KyselyAuditStore } from '../../src/audit';
import { isWardenError } from '../../src/core/errors';
import { startPostgres, type PostgresHandle } from '../helpers/postgres';
import { labInstances, recordInput, type FixtureInstance } from '../helpers/trail-fixtures';

/**
 * One suite, two stores: every test runs against a fresh SQLite file and a fresh database on a real
 * PostgreSQL started on 127.0.0.1 for this file.
 */
let pg: PostgresHandle;
let tmp: string;
let dbCounter = 0;
const open: KyselyAuditStore[] = [];

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-audit-'));
  pg = await startPostgres();
});

afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => s.close()));
});

afterAll(async () => {
  await pg?.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

interface Backend {
  name: 'sqlite' | 'postgres';
  /** A fresh, empty database; returns a factory for more store instances on the same database. */
  fresh(): () => KyselyAuditStore;
}

const backends: Backend[] = [
  {
    name: 'sqlite',
    fresh() {
      const file = path.join(tmp, `trail-${++dbCounter}.sqlite`);
      return () => { const s = openSqliteAuditStore(file); open.push(s); return s; };
    },
  },
  {
    name: 'postgres',
    fresh() {
      const url = pg.createDatabase(`trail_${++dbCounter}`);
      return () => { const s = openPostgresAuditStore(url); open.push(s); return s; };
    },
  },
];

const clean = labInstances('clean', 6);
const adversarial = labInstances('adversarial', 4);
const T0 = Date.UTC(2026, 10, 1, 8, 0, 0);
const MIN = 60_000;
const DAY = 86_400_000;

async function expectCode(p: Promise<unknown>, code: string): Promise<Error> {
  try {
    await p;
  } catch (err) {
    expect(isWardenError(err)).toBe(true);
    expect((err as { code: string }).code).toBe(code);
    return err as Error;
  }
  throw new Error(`expected ${code}, nothing was thrown`);
}

describe.each(backends)('audit store on $name', (backend) => {
  it('migrates a fresh database to the latest version and records every migration applied', async () => {
    const store = backend.fresh()();
    const applied = await store.migrate();
    expect(applied).toEqual(Object.keys(AUDIT_MIGRATIONS));
    const status = await store.migrations();
    expect(status.map((m) => m.name)).toEqual(Object.keys(AUDIT_MIGRATIONS));
    for (const m of status) expect(m.executedAt).toBeInstanceOf(Date);
    expect(await store.migrate()).toEqual([]);
  });

  it('migrates a database left at the first version up, keeping its rows', async () => {
    const store = backend.fresh()();
    expect(await store.migrateTo('001_decisions')).toEqual(['001_decisions']);
    const status = await store.migrations();
    expect(status.filter((m) => m.executedAt).map((m) => m.name)).toEqual(['001_decisions']);
    // A row as version 1 wrote it (no quarantine columns yet).
    await sql`INSERT INTO decisions (id, time_ms, route, request_id, client, model_sha256, bundle_sha256, study_hash, series_hash,
      sop_hash, sop_class_uid, modality, transfer_syntax_uid, size_bytes, sha256, verdict, observed_verdict, prediction_label,
      prediction_probability, reasons_json, scores_json, timings_json, forwarded, upstream_status, upstream_failure_reason)
      VALUES ('v1-row', ${T0}, 'stow', 'req-v1', 'old-client', NULL, NULL, ${'c'.repeat(64)}, NULL, ${'d'.repeat(64)}, NULL, 'DX', NULL,
      1234, ${'e'.repeat(64)}, 'flag', NULL, 'NORMAL', 0.5, '[]', '{}', '{}', 1, 200, NULL)`.execute(store.db);
    expect(await store.migrate()).toEqual(['002_quarantine_and_actions', '003_dead_letters']);
    const rec = await store.get('v1-row');
    expect(rec).toMatchObject({ id: 'v1-row', verdict: 'flag', client: 'old-client', sizeBytes: 1234, quarantine: null, forwarded: true, actions: [] });
    // The new tables work on the upgraded database.
    const action = await store.recordAction({ decisionId: 'v1-row', action: 'note', actor: 'admin', comment: 'checked after upgrade' });
    expect((await store.get('v1-row'))!.actions).toEqual([action]);
    expect(await store.recordDeadLetter({ channel: 'webhook', eventType: 'flag', target: 'https://siem.example/hook', payload: { a: 1 }, attempts: 5 })).toMatch(/-/);
  });

  it('records a decision with its identity, context, reasons, scores and timings, and reads it back', async () => {
    const store = backend.fresh()();
    await store.migrate();
    const inst = adversarial[0];
    const input = recordInput(inst, 'block', T0, { requestId: 'req-42' });
    const id = await store.recordDecision(input);
    const rec = await store.get(id);
    expect(rec).toEqual({
      id,
      time: T0,
      route: 'stow',
      requestId: 'req-42',
      client: 'modality-ct1',
      modelSha256: 'a'.repeat(64),
      bundleSha256: 'b'.repeat(64),
      studyHash: inst.identity.studyHash,
      seriesHash: inst.identity.seriesHash,
      sopHash: inst.identity.sopHash,
      sopClassUid: inst.identity.sopClassUid,
      modality: 'DX',
      transferSyntaxUid: inst.identity.transferSyntaxUid,
      sizeBytes: inst.bytes.length,
      sha256: inst.sha256,
      verdict: 'block',
      observedVerdict: null,
      prediction: { label: 'PNEUMONIA', probability: 0.93 },
      reasons: [{ signal: 'adversarial', code: 'ADVERSARIAL_PVALUE', detector: 'uad', pValue: 0.0009, threshold: 0.001 }],
      scores: {
        uad: { score: 9.5, pValue: 0.0009, signal: 'adversarial' },
        kd: { score: 0.7, pValue: 0.5, signal: 'domain' },
        nrd: { score: null, pValue: 1, signal: 'adversarial' },
      },
      timings: { decode: 3.2, preprocess: 1.1, infer: 17.5, detect: 0.8 },
      forwarded: false,
      upstreamStatus: null,
      upstreamFailureReason: 0xa900,
      quarantine: { state: 'quarantined', changedAt: T0, bytesDeletedAt: null, release: null },
      actions: [],
    });
    // observe mode: the would-have verdict is kept beside the verdict given
    const observedId = await store.recordDecision({ ...recordInput(clean[0], 'forward', T0 + 1), decision: { ...recordInput(clean[0], 'forward', T0).decision, observed: { verdict: 'block' } } });
    expect((await store.get(observedId))!.observedVerdict).toBe('block');
    expect(await store.get('no-such-id')).toBeNull();
  });

  it('refuses a raw UID or a name where a hash belongs, without repeating it', async () => {
    const store = backend.fresh()();
    await store.migrate();
    const inst = clean[0];
    const base = recordInput(inst, 'forward', T0);
    for (const identity of [
      { ...inst.identity, studyHash: inst.identifiers.studyUid },
      { ...inst.identity, sopHash: inst.identifiers.patientName },
      { ...inst.identity, seriesHash: inst.identifiers.seriesUid },
      { ...inst.identity, sha256: inst.identifiers.patientId },
      { ...inst.identity, sopClassUid: inst.identifiers.patientName },
    ]) {
      const err = await expectCode(store.recordDecision({ ...base, identity }), 'AUDIT_INPUT_INVALID');
      for (const value of Object.values(inst.identifiers).filter(Boolean)) expect(err.message).not.toContain(value);
    }
    expect((await store.query()).total).toBe(0);
  });

  it('filters by time range, verdict, signal, study hash, detector and status, and pages without gaps or repeats', async () => {
    const store = backend.fresh()();
    await store.migrate();
    // 10 records, one a minute: clean ones forwarded, every third flagged, adversarial ones blocked (mgm or uad).
    const ids: string[] = [];
    for (let i = 0; i < 10; i++) {
      const adv = i % 3 === 2;
      const inst = adv ? adversarial[(i / 3) | 0] : clean[i % clean.length];
      const verdict = adv ? 'block' : i === 4 ? 'flag' : 'forward';
      ids.push(await store.recordDecision(recordInput(inst, verdict, T0 + i * MIN, { detector: i === 8 ? 'mgm' : 'uad' })));
    }
    const count = async (q: Parameters<KyselyAuditStore['query']>[0]) => (await store.query(q)).total;
    expect(await count({})).toBe(10);
    expect(await count({ verdict: 'block' })).toBe(3);
    expect(await count({ verdict: ['block', 'flag'] })).toBe(4);
    expect(await count({ signal: 'adversarial' })).toBe(3);
    expect(await count({ signal: 'domain' })).toBe(1);
    expect(await count({ signal: 'error' })).toBe(0);
    expect(await count({ detector: 'mgm' })).toBe(1);
    expect(await count({ detector: 'kd' })).toBe(1);
    expect(await count({ from: T0 + 2 * MIN, to: T0 + 5 * MIN })).toBe(3);
    expect(await count({ from: new Date(T0 + 9 * MIN) })).toBe(1);
    expect(await count({ status: 'quarantined' })).toBe(3);
    expect(await count({ status: ['released', 'discarded'] })).toBe(0);
    expect(await count({ studyHash: adversarial[0].identity.studyHash })).toBe(1);
    expect(await count({ studyHash: adversarial[0].identity.studyHash, verdict: 'forward' })).toBe(0);
    expect(await count({ route: 'wado' })).toBe(0);

    const newestFirst = await store.query({ limit: 3 });
    expect(newestFirst.items.map((r) => r.time)).toEqual([T0 + 9 * MIN, T0 + 8 * MIN, T0 + 7 * MIN]);
    const seen: string[] = [];
    for (let offset = 0; ; offset += 3) {
      const page = await store.query({ limit: 3, offset, order: 'asc' });
      expect(page.total).toBe(10);
      if (!page.items.length) break;
      seen.push(...page.items.map((r) => r.id));
    }
    expect(seen).toEqual(ids);
    await expectCode(store.query({ limit: 0 }), 'AUDIT_INPUT_INVALID');
    await expectCode(store.query({ verdict: 'maybe' as never }), 'AUDIT_INPUT_INVALID');
  });

  it('prunes records and dead letters past the retention, keeping recent ones and items whose bytes are kept', async () => {
    const store = backend.fresh()();
    await store.migrate();
    const now = T0 + 100 * DAY;
    const oldForward = await store.recordDecision(recordInput(clean[0], 'forward', T0));
    const oldBlocked = await store.recordDecision(recordInput(adversarial[0], 'block', T0));
    const oldDiscarded = await store.recordDecision(recordInput(adversarial[1], 'block', T0));
    await store.discard(oldDiscarded, { actor: 'rev', comment: 'attack', at: T0 + DAY });
    await store.markBytesDeleted([oldDiscarded], T0 + 2 * DAY);
    const recent = await store.recordDecision(recordInput(clean[1], 'forward', now - DAY));
    await store.recordDeadLetter({ at: T0, channel: 'webhook', eventType: 'block', target: 'https://siem.example/hook', payload: { id: oldBlocked }, attempts: 5, lastError: 'ECONNREFUSED', lastStatus: null });
    await store.recordDeadLetter({ at: now - DAY, channel: 'webhook', eventType: 'block', target: 'https://siem.example/hook', payload: { id: recent }, attempts: 5, lastStatus: 503 });

    const result = await store.prune({ olderThanDays: 30, now });
    expect(result).toEqual({ before: now - 30 * DAY, decisions: 2, actions: 1, deadLetters: 1 });
    expect(await store.get(oldForward)).toBeNull();
    expect(await store.get(oldDiscarded)).toBeNull();
    expect(await store.get(oldBlocked)).not.toBeNull();
    expect(await store.get(recent)).not.toBeNull();
    const orphans = await sql<{ n: number }>`SELECT count(*) AS n FROM decision_reasons WHERE decision_id IN (${oldForward}, ${oldDiscarded})`.execute(store.db);
    expect(Number(orphans.rows[0].n)).toBe(0);
    const scores = await sql<{ n: number }>`SELECT count(*) AS n FROM decision_scores WHERE decision_id IN (${oldForward}, ${oldDiscarded})`.execute(store.db);
    expect(Number(scores.rows[0].n)).toBe(0);
    const dead = await store.listDeadLetters();
    expect(dead.total).toBe(1);
    expect(dead.items[0]).toMatchObject({ channel: 'webhook', eventType: 'block', payload: { id: recent }, attempts: 5, lastStatus: 503, lastError: null });
    // The store's configured retention is the default.
    expect((await store.prune({ now })).decisions).toBe(0);
  });

  it('records reviewer actions with a required comment, in order, and refuses unknown records', async () => {
    const store = backend.fresh()();
    await store.migrate();
    const id = await store.recordDecision(recordInput(adversarial[0], 'block', T0));
    await expectCode(store.recordAction({ decisionId: id, action: 'note', actor: 'rev', comment: '   ' }), 'AUDIT_INPUT_INVALID');
    await expectCode(store.recordAction({ decisionId: id, action: 'note', actor: '', comment: 'x' }), 'AUDIT_INPUT_INVALID');
    await expectCode(store.recordAction({ decisionId: 'nope', action: 'note', actor: 'rev', comment: 'x' }), 'AUDIT_RECORD_NOT_FOUND');
    const a1 = await store.recordAction({ decisionId: id, action: 'note', actor: 'rev', comment: 'looking at it', at: T0 + 1 });
    const a2 = await store.recordAction({ decisionId: id, action: 'note', actor: 'admin', comment: 'escalated', at: T0 + 2, outcome: 'escalated' });
    expect((await store.get(id))!.actions).toEqual([a1, a2]);
    expect(a2).toMatchObject({ decisionId: id, at: T0 + 2, action: 'note', actor: 'admin', comment: 'escalated', outcome: 'escalated' });
  });

  it('moves a quarantined item through its states only by compare-and-set', async () => {
    const store = backend.fresh()();
    await store.migrate();
    const id = await store.recordDecision(recordInput(adversarial[0], 'block', T0));
    expect(await store.claimRelease(id, { claimId: 'c1', actor: 'rev', comment: 'false positive', at: T0 + 1 })).toEqual({ claimed: true });
    const second = await store.claimRelease(id, { claimId: 'c2', actor: 'rev2', comment: 'me too', at: T0 + 2 });
    expect(second.claimed).toBe(false);
    expect(second.claimed === false && second.record.quarantine!.state).toBe('releasing');
    expect(await store.discard(id, { actor: 'rev2', comment: 'no' })).toMatchObject({ claimed: false });
    expect(await store.completeRelease(id, 'c2', { ok: true, upstreamStatus: 200, actor: 'rev2', comment: 'me too' })).toBe(false);
    expect(await store.completeRelease(id, 'c1', { ok: false, upstreamStatus: 503, detail: 'upstream\nbusy', actor: 'rev', comment: 'false positive', at: T0 + 3 })).toBe(true);
    let rec = (await store.get(id))!;
    expect(rec.quarantine).toEqual({ state: 'release_failed', changedAt: T0 + 3, bytesDeletedAt: null, release: { upstreamStatus: 503, detail: 'upstream busy', at: T0 + 3 } });
    // release_failed is retryable
    expect(await store.claimRelease(id, { claimId: 'c3', actor: 'rev', comment: 'retry', at: T0 + 4 })).toEqual({ claimed: true });
    expect(await store.completeRelease(id, 'c3', { ok: true, upstreamStatus: 200, actor: 'rev', comment: 'retry', at: T0 + 5 })).toBe(true);
    expect(await store.claimRelease(id, { claimId: 'c4', actor: 'rev', comment: 'again', at: T0 + 6 })).toMatchObject({ claimed: false });
    rec = (await store.get(id))!;
    expect(rec.quarantine!.state).toBe('released');
    expect(rec.actions!.map((a) => [a.action, a.outcome, a.upstreamStatus, a.comment])).toEqual([
      ['release', 'release_failed', 503, 'false positive'],
      ['release', 'released', 200, 'retry'],
    ]);
    // a forwarded instance was never quarantined: nothing to claim
    const fwd = await store.recordDecision(recordInput(clean[0], 'forward', T0));
    expect(await store.claimRelease(fwd, { claimId: 'c5', actor: 'rev', comment: 'x' })).toMatchObject({ claimed: false });
    await expectCode(store.claimRelease('nope', { claimId: 'c6', actor: 'rev', comment: 'x' }), 'AUDIT_RECORD_NOT_FOUND');
  });

  it('lets exactly one of 20 concurrent claims from two store instances on one database win', async () => {
    const factory = backend.fresh();
    const a = factory();
    const b = factory();
    await Promise.all([a.migrate(), b.migrate()]);
    const ids = [];
    for (const inst of adversarial.slice(0, 3)) ids.push(await a.recordDecision(recordInput(inst, 'block', T0)));
    for (const id of ids) {
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).claimRelease(id, { claimId: `claim-${i}`, actor: 'rev', comment: 'race' })));
      expect(results.filter((r) => r.claimed)).toHaveLength(1);
    }
  });

  it('fails releases left in releasing by a dead process, once', async () => {
    const store = backend.fresh()();
    await store.migrate();
    const id = await store.recordDecision(recordInput(adversarial[0], 'block', T0));
    await store.claimRelease(id, { claimId: 'dead', actor: 'rev', comment: 'go', at: T0 + 1 });
    expect(await store.failStaleReleases(T0 + 1, 'interrupted')).toEqual([]);
    expect(await store.failStaleReleases(T0 + 2, 'interrupted', T0 + 3)).toEqual([id]);
    expect(await store.failStaleReleases(T0 + 2, 'interrupted', T0 + 3)).toEqual([]);
    const rec = (await store.get(id))!;
    expect(rec.quarantine!.state).toBe('release_failed');
    expect(rec.actions!.map((a) => [a.actor, a.outcome])).toEqual([['warden', 'release_failed']]);
    expect(await store.completeRelease(id, 'dead', { ok: true, upstreamStatus: 200, actor: 'rev', comment: 'go' })).toBe(false);
  });

  it('lists kept content addresses, sweep candidates and holders across records sharing bytes', async () => {
    const store = backend.fresh()();
    await store.migrate();
    const inst: FixtureInstance = adversarial[0];
    const first = await store.recordDecision(recordInput(inst, 'block', T0));
    const second = await store.recordDecision(recordInput(inst, 'block', T0 + MIN));
    const other = await store.recordDecision(recordInput(adversarial[1], 'block', T0));
    await store.discard(first, { actor: 'rev', comment: 'attack', at: T0 + 10 });
    await store.discard(other, { actor: 'rev', comment: 'attack', at: T0 + 10 });
    expect(await store.keptQuarantineAddresses()).toEqual(new Set([inst.sha256, adversarial[1].sha256]));
    expect(new Set(await store.sweepCandidates({ discardedBefore: T0 + 11, releasedBefore: T0 + 11 }))).toEqual(new Set([inst.sha256, adversarial[1].sha256]));
    expect(await store.sweepCandidates({ discardedBefore: T0 + 10, releasedBefore: T0 + 10 })).toEqual([]);
    const holders = await store.quarantineHolders(inst.sha256);
    expect(holders.map((h) => [h.id, h.state]).sort()).toEqual([[first, 'discarded'], [second, 'quarantined']].sort());
    await store.markBytesDeleted([other], T0 + 20);
    expect(await store.keptQuarantineAddresses()).toEqual(new Set([inst.sha256]));
    expect((await store.get(other))!.quarantine!.bytesDeletedAt).toBe(T0 + 20);
  });
});
