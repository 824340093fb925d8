import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openPostgresAuditStore, openSqliteAuditStore, type AuditRecord, type KyselyAuditStore } from '../../src/audit';
import { isWardenError } from '../../src/core/errors';
import { Quarantine, type ForwardFn, type QuarantineOptions } from '../../src/quarantine';
import { startPostgres, type PostgresHandle } from '../helpers/postgres';
import { fixtureFromBytes, labInstances, recordInput } from '../helpers/trail-fixtures';

/**
 * The quarantine against real files and both real stores: durable puts (also across kill -9), exactly-once
 * release under concurrency (two processes' worth of store instances on one PostgreSQL), discard and sweep,
 * reconcile of crash leftovers.
 */
let pg: PostgresHandle;
let tmp: string;
let n = 0;
const stores: KyselyAuditStore[] = [];

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-quarantine-'));
  pg = await startPostgres();
});
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
});
afterAll(async () => {
  await pg?.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

const adversarial = labInstances('adversarial', 4);
const clean = labInstances('clean', 1);
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const MIN = 60_000;
const DAY = 86_400_000;

interface Setup {
  dir: string;
  store: KyselyAuditStore;
  /** Another store instance on the same database (PostgreSQL only: one SQLite connection per process). */
  another(): Promise<KyselyAuditStore>;
  /** What another process opens: the SQLite file or the PostgreSQL URL. */
  location: string;
}

const backends: { name: string; setup(): Promise<Setup> }[] = [
  {
    name: 'sqlite',
    async setup() {
      const file = path.join(tmp, `q-${++n}.sqlite`);
      const store = openSqliteAuditStore(file);
      stores.push(store);
      await store.migrate();
      return { dir: path.join(tmp, `q-${n}`), store, location: file, another: async () => { throw new Error('one SQLite connection per process'); } };
    },
  },
  {
    name: 'postgres',
    async setup() {
      const url = pg.createDatabase(`q_${++n}`);
      const store = openPostgresAuditStore(url);
      stores.push(store);
      await store.migrate();
      return {
        dir: path.join(tmp, `q-${n}`), store, location: url,
        another: async () => { const s = openPostgresAuditStore(url); stores.push(s); await s.migrate(); return s; },
      };
    },
  },
];

function countingForward(delayMs = 30, result = { ok: true, upstreamStatus: 200 }) {
  const calls: { sha256: string; id: string }[] = [];
  const forward: ForwardFn = async (bytes: Buffer, rec: AuditRecord) => {
    calls.push({ sha256: sha(bytes), id: rec.id });
    await new Promise((r) => setTimeout(r, delayMs));
    return result;
  };
  return { calls, forward };
}

async function expectCode(p: Promise<unknown>, code: string): Promise<void> {
  const err = await p.then(() => null, (e: unknown) => e);
  expect(isWardenError(err)).toBe(true);
  expect((err as { code: string }).code).toBe(code);
}

async function quarantineBlocked(q: Quarantine, store: KyselyAuditStore, i: number, time = Date.now()): Promise<string> {
  const inst = adversarial[i];
  const put = await q.put(inst.bytes);
  expect(put.sha256).toBe(inst.sha256);
  return store.recordDecision(recordInput(inst, 'block', time, { quarantined: true }));
}

describe('quarantine files', () => {
  it('has the bytes under their sha256, 0600 in 0700 folders, before put resolves', async () => {
    const dir = path.join(tmp, 'files');
    const store = openSqliteAuditStore(path.join(tmp, 'files.sqlite'));
    stores.push(store);
    const q = new Quarantine({ dir, audit: store });
    const inst = adversarial[0];
    const put = await q.put(inst.bytes);
    const expected = path.join(dir, inst.sha256.slice(0, 2), `${inst.sha256.slice(2)}.dcm`);
    expect(put).toEqual({ sha256: inst.sha256, size: inst.bytes.length, path: expected, created: true });
    expect(sha(fs.readFileSync(expected))).toBe(inst.sha256);
    expect(fs.statSync(expected).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.dirname(expected)).mode & 0o777).toBe(0o700);
    expect(fs.statSync(dir).mode & 0o777).toBe(0o700);
    expect(fs.readdirSync(path.join(dir, '.tmp'))).toEqual([]);
    // same bytes again: one file; a spooled file streams to the same address
    expect((await q.put(inst.bytes)).created).toBe(false);
    const spooled = path.join(tmp, 'spooled.dcm');
    fs.writeFileSync(spooled, adversarial[1].bytes);
    const fromFile = await q.putFile(spooled);
    expect(fromFile.sha256).toBe(adversarial[1].sha256);
    expect(sha(fs.readFileSync(fromFile.path))).toBe(adversarial[1].sha256);
    const usage = await q.usage();
    expect(usage).toMatchObject({ count: 2, bytes: adversarial[0].bytes.length + adversarial[1].bytes.length });
    expect(usage.freeBytes).toBeGreaterThan(0);
    expect(usage.totalBytes).toBeGreaterThanOrEqual(usage.freeBytes);
  });

  it('keeps the bytes and the record of a process killed (SIGKILL) right after it answered', async () => {
    const dir = path.join(tmp, 'killed');
    const dbFile = path.join(tmp, 'killed.sqlite');
    const inst = adversarial[2];
    const input = recordInput(inst, 'block', Date.UTC(2026, 10, 2), { requestId: 'killed-1' });
    // Runs the built modules (the test command builds dist/ first), as the gateway process would.
    const script = `
      const { Quarantine } = require(${JSON.stringify(path.resolve('dist/quarantine'))});
      const { openSqliteAuditStore } = require(${JSON.stringify(path.resolve('dist/audit'))});
      (async () => {
        const store = openSqliteAuditStore(${JSON.stringify(dbFile)});
        await store.migrate();
        const q = new Quarantine({ dir: ${JSON.stringify(dir)}, audit: store });
        await q.put(require('fs').readFileSync(${JSON.stringify(inst.row.path)}));
        const id = await store.recordDecision(${JSON.stringify(input)});
        process.stdout.write('answered ' + id + '\\n', () => process.kill(process.pid, 'SIGKILL'));
      })();`;
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    const signal = await new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, sig) => resolve(sig)));
    expect({ signal, err }).toEqual({ signal: 'SIGKILL', err: '' });
    const id = /answered (\S+)/.exec(out)![1];

    const store = openSqliteAuditStore(dbFile);
    stores.push(store);
    const q = new Quarantine({ dir, audit: store });
    const report = await q.reconcile();
    expect(report.missing).toEqual([]);
    expect(report.orphanFiles).toEqual([]);
    const rec = await store.get(id);
    expect(rec).toMatchObject({ requestId: 'killed-1', sha256: inst.sha256, verdict: 'block', quarantine: { state: 'quarantined' } });
    expect(sha(await q.bytesOf(id))).toBe(inst.sha256);
  });
});

describe.each(backends)('quarantine on $name', (backend) => {
  it('forwards once when released by 10 concurrent calls and again later, and records the outcome', async () => {
    const { dir, store } = await backend.setup();
    const q = new Quarantine({ dir, audit: store });
    const id = await quarantineBlocked(q, store, 0);
    const { calls, forward } = countingForward();
    const outcomes = await Promise.all(Array.from({ length: 10 }, (_, i) => q.release(id, `rev${i}`, 'reviewed: false positive', forward)));
    expect(calls).toEqual([{ sha256: adversarial[0].sha256, id }]);
    expect(outcomes.filter((o) => o.forwardedNow)).toHaveLength(1);
    for (const o of outcomes) expect(o).toMatchObject({ id, state: 'released', upstreamStatus: 200 });
    // a later release, also from a restarted quarantine on the same store, does nothing twice
    const again = await new Quarantine({ dir, audit: store }).release(id, 'rev', 'again', forward);
    expect(again).toMatchObject({ state: 'released', forwardedNow: false, upstreamStatus: 200 });
    expect(calls).toHaveLength(1);
    const rec = (await store.get(id))!;
    expect(rec.quarantine).toMatchObject({ state: 'released', release: { upstreamStatus: 200 } });
    expect(rec.actions!.filter((a) => a.action === 'release')).toHaveLength(1);
    expect(rec.actions![0]).toMatchObject({ outcome: 'released', comment: 'reviewed: false positive' });
  });

  it('records a failed release as retryable and forwards again only when asked again', async () => {
    const { dir, store } = await backend.setup();
    const q = new Quarantine({ dir, audit: store });
    const id = await quarantineBlocked(q, store, 1);
    const failing = countingForward(5, { ok: false, upstreamStatus: 503 });
    const failed = await q.release(id, 'rev', 'try', failing.forward);
    expect(failed).toMatchObject({ state: 'release_failed', forwardedNow: true, upstreamStatus: 503 });
    const throwing: ForwardFn = async () => { throw new Error('connect ECONNREFUSED 127.0.0.1:1'); };
    expect(await q.release(id, 'rev', 'try again', throwing)).toMatchObject({ state: 'release_failed', upstreamStatus: null, detail: expect.stringContaining('ECONNREFUSED') });
    const ok = countingForward();
    expect(await q.release(id, 'rev', 'upstream is back', ok.forward)).toMatchObject({ state: 'released', forwardedNow: true });
    expect(ok.calls).toHaveLength(1);
    expect(failing.calls).toHaveLength(1);
    expect((await store.get(id))!.actions!.map((a) => a.outcome)).toEqual(['release_failed', 'release_failed', 'released']);
  });

  it('refuses releases without a comment, of discarded and of never-quarantined instances', async () => {
    const { dir, store } = await backend.setup();
    const q = new Quarantine({ dir, audit: store });
    const id = await quarantineBlocked(q, store, 2);
    const { calls, forward } = countingForward();
    await expectCode(q.release(id, 'rev', '  ', forward), 'AUDIT_INPUT_INVALID');
    await expectCode(q.discard(id, 'rev', ''), 'AUDIT_INPUT_INVALID');
    expect(await q.discard(id, 'rev', 'confirmed attack')).toEqual({ id, state: 'discarded', changed: true });
    expect(await q.discard(id, 'rev2', 'again')).toEqual({ id, state: 'discarded', changed: false });
    await expectCode(q.release(id, 'rev', 'changed my mind', forward), 'QUARANTINE_CONFLICT');
    const fwd = await store.recordDecision(recordInput(clean[0], 'forward', Date.now()));
    await expectCode(q.release(fwd, 'rev', 'x', forward), 'QUARANTINE_CONFLICT');
    await expectCode(q.discard(fwd, 'rev', 'x'), 'QUARANTINE_CONFLICT');
    await expectCode(q.release('no-such-id', 'rev', 'x', forward), 'AUDIT_RECORD_NOT_FOUND');
    expect(calls).toHaveLength(0);
    const rec = (await store.get(id))!;
    expect(rec.actions!.map((a) => [a.action, a.actor, a.comment])).toEqual([['discard', 'rev', 'confirmed attack']]);
  });

  it('deletes a discarded instance\'s bytes only after the grace period and keeps its record', async () => {
    const { dir, store } = await backend.setup();
    let clock = Date.now();
    const opts: QuarantineOptions = { dir, audit: store, discardGraceMs: DAY, recentPutMs: MIN, now: () => clock };
    const q = new Quarantine(opts);
    const id = await quarantineBlocked(q, store, 3, clock);
    // the same bytes blocked a second time, still under review: the shared file must stay
    const shared = await quarantineBlocked(q, store, 0, clock);
    const sharedToo = await quarantineBlocked(q, store, 0, clock);
    await q.discard(id, 'rev', 'attack');
    await q.discard(shared, 'rev', 'attack');
    const file = q.files.pathOf(adversarial[3].sha256);
    expect(await q.sweep()).toEqual({ deleted: 0, bytes: 0, records: 0, kept: 0 });
    expect(fs.existsSync(file)).toBe(true);
    clock += DAY + MIN + 1;
    expect(await q.sweep()).toEqual({ deleted: 1, bytes: adversarial[3].bytes.length, records: 1, kept: 1 });
    expect(fs.existsSync(file)).toBe(false);
    expect(fs.existsSync(q.files.pathOf(adversarial[0].sha256))).toBe(true);
    const rec = (await store.get(id))!;
    expect(rec.quarantine).toMatchObject({ state: 'discarded', bytesDeletedAt: clock });
    expect(rec.actions!.map((a) => a.comment)).toEqual(['attack']);
    await expectCode(q.bytesOf(id), 'QUARANTINE_CONFLICT');
    expect(sha(await q.bytesOf(sharedToo))).toBe(adversarial[0].sha256);
    expect(await q.sweep()).toEqual({ deleted: 0, bytes: 0, records: 0, kept: 1 });
  });

  it('reconciles crash leftovers: temp files, a stopped sweep, orphan files, missing files and stale releases', async () => {
    const { dir, store } = await backend.setup();
    const now = Date.now();
    const opts: QuarantineOptions = { dir, audit: store, recentPutMs: MIN, tempMaxAgeMs: MIN, releaseLeaseMs: MIN };
    const q = new Quarantine(opts);
    const past = new Date(now - 2 * MIN);
    // 1. an interrupted put
    await q.put(adversarial[1].bytes); // creates the layout
    const temp = path.join(dir, '.tmp', 'stream.123.abc.part');
    fs.writeFileSync(temp, adversarial[1].bytes.subarray(0, 100));
    fs.utimesSync(temp, past, past);
    // 2. a file whose record never arrived (the process died between put and record)
    const orphan = adversarial[1];
    fs.utimesSync(q.files.pathOf(orphan.sha256), past, past);
    // 3. a record under review whose file a sweep had moved aside when it stopped
    const trashedId = await quarantineBlocked(q, store, 2, now - 2 * MIN);
    fs.renameSync(q.files.pathOf(adversarial[2].sha256), path.join(dir, '.trash', `${adversarial[2].sha256}.dead01`));
    // 4. records whose files are gone: one discarded (repairable), one still quarantined (lost: reported)
    const discardedId = await quarantineBlocked(q, store, 3, now - 2 * MIN);
    await q.discard(discardedId, 'rev', 'attack');
    fs.rmSync(q.files.pathOf(adversarial[3].sha256));
    const lostSha = sha(Buffer.from('bytes lost with a disk'));
    const lostInst = { ...clean[0], sha256: lostSha, identity: { ...clean[0].identity, sha256: lostSha } };
    const lostId = await store.recordDecision(recordInput(lostInst, 'block', now - 2 * MIN, { quarantined: true }));
    // 5. a release whose process died after claiming it
    const staleId = await quarantineBlocked(q, store, 0, now - 2 * MIN);
    await store.claimRelease(staleId, { claimId: 'dead-process', actor: 'rev', comment: 'go', at: now - 2 * MIN });
    // 6. something that is not ours
    fs.writeFileSync(path.join(dir, 'notes.txt'), 'x');

    const restarted = new Quarantine(opts); // as after a restart
    const report = await restarted.reconcile();
    expect(report).toEqual({
      tempFilesRemoved: 1,
      trashRestored: 1,
      trashRemoved: 0,
      adopted: [],
      orphanFiles: [orphan.sha256],
      garbageRemoved: [],
      markedDeleted: [discardedId],
      missing: [{ id: lostId, sha256: lostInst.sha256, state: 'quarantined' }],
      staleReleasesFailed: [staleId],
      strays: ['notes.txt'],
    });
    expect(fs.readdirSync(path.join(dir, '.tmp'))).toEqual([]);
    expect(sha(await restarted.bytesOf(trashedId))).toBe(adversarial[2].sha256);
    expect((await store.get(staleId))!.quarantine!.state).toBe('release_failed');
    const { calls, forward } = countingForward();
    expect(await restarted.release(staleId, 'rev', 'retry after restart', forward)).toMatchObject({ state: 'released', forwardedNow: true });
    expect(calls).toHaveLength(1);

    // Run again: repaired things stay repaired; what cannot be repaired is reported again.
    const second = await restarted.reconcile();
    expect(second).toMatchObject({ tempFilesRemoved: 0, trashRestored: 0, markedDeleted: [], staleReleasesFailed: [], orphanFiles: [orphan.sha256], missing: [{ id: lostId }] });

    // With an identify function (the gateway decodes and hashes), the orphan becomes a reviewable record.
    const adopting = new Quarantine({
      ...opts,
      identify: async (bytes, sha256) => ({ ...recordInput(fixtureFromBytes(bytes, orphan.row), 'block', now, { requestId: 'reconcile' }), identity: { ...fixtureFromBytes(bytes, orphan.row).identity, sha256 } }),
    });
    const third = await adopting.reconcile();
    expect(third.adopted).toEqual([orphan.sha256]);
    expect(third.orphanFiles).toEqual([]);
    const adopted = await store.query({ studyHash: orphan.identity.studyHash });
    expect(adopted.items.map((r) => [r.requestId, r.quarantine?.state])).toEqual([['reconcile', 'quarantined']]);
  });

  it('forwards once when two processes sharing the database and the folder release concurrently', async () => {
    const { dir, store, location } = await backend.setup();
    const q = new Quarantine({ dir, audit: store });
    const id = await quarantineBlocked(q, store, 1);
    const log = path.join(tmp, `forwarded-${n}.log`);
    const go = path.join(tmp, `go-${n}`);
    // Each process waits for the go file, then releases 5 times at once; the upstream appends to one log.
    const script = `
      const fs = require('fs');
      const { Quarantine } = require(${JSON.stringify(path.resolve('dist/quarantine'))});
      const { openAuditStore } = require(${JSON.stringify(path.resolve('dist/audit'))});
      (async () => {
        const store = openAuditStore(process.argv[1]);
        const q = new Quarantine({ dir: ${JSON.stringify(dir)}, audit: store });
        const forward = async (bytes) => {
          fs.appendFileSync(${JSON.stringify(log)}, require('crypto').createHash('sha256').update(bytes).digest('hex') + ' ' + process.pid + '\\n');
          await new Promise((r) => setTimeout(r, 100));
          return { ok: true, upstreamStatus: 200 };
        };
        process.stdout.write('ready\\n');
        for (let i = 0; i < 400 && !fs.existsSync(${JSON.stringify(go)}); i++) await new Promise((r) => setTimeout(r, 25));
        const outcomes = await Promise.all([0, 1, 2, 3, 4].map((i) => q.release(${JSON.stringify(id)}, 'rev' + i, 'two processes', forward)));
        process.stdout.write(JSON.stringify(outcomes.map((o) => [o.state, o.forwardedNow])) + '\\n');
        await store.close();
      })().catch((e) => { console.error(e); process.exit(1); });`;
    const children = [0, 1].map(() => spawn(process.execPath, ['-e', script, location], { stdio: ['ignore', 'pipe', 'pipe'] }));
    const outputs = children.map((c) => {
      let out = '';
      let err = '';
      c.stdout.on('data', (d) => { out += d; });
      c.stderr.on('data', (d) => { err += d; });
      return { c, get out() { return out; }, get err() { return err; }, exit: new Promise<number | null>((r) => c.on('exit', (code) => r(code))) };
    });
    for (let i = 0; i < 600 && !outputs.every((o) => o.out.includes('ready')); i++) await new Promise((r) => setTimeout(r, 25));
    fs.writeFileSync(go, '');
    const codes = await Promise.all(outputs.map((o) => o.exit));
    expect({ codes, errs: outputs.map((o) => o.err) }).toEqual({ codes: [0, 0], errs: ['', ''] });
    const lines = fs.readFileSync(log, 'utf8').trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0].split(' ')[0]).toBe(adversarial[1].sha256);
    const outcomes = outputs.flatMap((o) => JSON.parse(o.out.trim().split('\n').pop()!) as [string, boolean][]);
    expect(outcomes).toHaveLength(10);
    expect(outcomes.filter(([, now]) => now)).toHaveLength(1);
    expect(outcomes.every(([state]) => state === 'released')).toBe(true);
    expect((await store.get(id))!.actions!.filter((a) => a.action === 'release')).toHaveLength(1);
  });

  if (backend.name === 'postgres') {
    it('forwards once when two processes\' store instances on one PostgreSQL release concurrently', async () => {
      const { dir, store, another } = await backend.setup();
      const other = await another();
      const a = new Quarantine({ dir, audit: store });
      const b = new Quarantine({ dir, audit: other });
      const id = await quarantineBlocked(a, store, 0);
      const { calls, forward } = countingForward(80);
      const outcomes = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? a : b).release(id, `rev${i}`, 'concurrent', forward)));
      expect(calls).toHaveLength(1);
      expect(calls[0].sha256).toBe(adversarial[0].sha256);
      expect(outcomes.filter((o) => o.forwardedNow)).toHaveLength(1);
      for (const o of outcomes) expect(o.state).toBe('released');
      // released on one, discarding on the other is refused
      await expectCode(b.discard(id, 'rev', 'too late'), 'QUARANTINE_CONFLICT');
    });
  }
});
