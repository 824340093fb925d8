import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough } from 'node:stream';
import { openAuditStore } from '../../src/audit';
import { runAuditMigrate, runAuditPrune, runAuditQuery } from '../../src/cli/audit';
import { parseCsv } from '../../src/eval/dataset';
import { startPostgres, type PostgresHandle } from '../helpers/postgres';
import { labInstances, recordInput } from '../helpers/trail-fixtures';

/** `warden audit` as a user runs it (bin/warden.js → dist/; the test command builds first), on SQLite and PostgreSQL. */
const BIN = path.resolve(__dirname, '..', '..', 'bin', 'warden.js');
let pg: PostgresHandle;
let tmp: string;

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-audit-cli-'));
  pg = await startPostgres();
});
afterAll(async () => {
  await pg?.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

function warden(...args: string[]) {
  const res = spawnSync(process.execPath, [BIN, 'audit', ...args], { encoding: 'utf8', timeout: 60000 });
  return { code: res.status, stdout: res.stdout, stderr: res.stderr };
}

const clean = labInstances('clean', 3);
const adversarial = labInstances('adversarial', 2);
const DAY = 86_400_000;
const now = Date.now();

describe.each([
  ['sqlite', () => path.join(tmp, 'cli.sqlite')],
  ['postgres', () => pg.createDatabase('cli')],
])('warden audit on %s', (_name, location) => {
  it('migrates, exports a period or a study as CSV and JSON, and prunes', async () => {
    const db = location();
    const migrated = warden('migrate', '--db', db);
    expect(migrated).toMatchObject({ code: 0 });
    expect(migrated.stdout).toContain('applied: 001_decisions, 002_quarantine_and_actions, 003_dead_letters');

    const store = openAuditStore(db);
    const ids: string[] = [];
    try {
      ids.push(await store.recordDecision(recordInput(clean[0], 'forward', now - 40 * DAY)));
      ids.push(await store.recordDecision(recordInput(clean[1], 'forward', now - 2 * DAY)));
      ids.push(await store.recordDecision(recordInput(adversarial[0], 'block', now - DAY)));
      ids.push(await store.recordDecision(recordInput(adversarial[1], 'block', now - 50 * DAY)));
      ids.push(await store.recordDecision(recordInput(clean[2], 'flag', now - 1000)));
    } finally {
      await store.close();
    }

    const lastWeek = warden('query', '--db', db, '--days', '7', '--format', 'csv');
    expect(lastWeek.code).toBe(0);
    const rows = parseCsv(lastWeek.stdout);
    expect(rows.map((r) => r.id)).toEqual([ids[1], ids[2], ids[4]]); // oldest first
    expect(rows[1]).toMatchObject({ verdict: 'block', study_hash: adversarial[0].identity.studyHash, sha256: adversarial[0].sha256, quarantine_state: 'quarantined', reasons: 'adversarial:ADVERSARIAL_PVALUE:uad:0.0009' });

    // The rest in-process (each spawn pays the whole CLI's start-up: onnxruntime, dcmjs, …).
    const quiet = new PassThrough();
    const lines = async (opts: Parameters<typeof runAuditQuery>[0]) => {
      const out = new PassThrough();
      const chunks: Buffer[] = [];
      out.on('data', (c) => chunks.push(c));
      await runAuditQuery({ db, ...opts }, out, quiet);
      return Buffer.concat(chunks).toString('utf8').trim().split('\n').filter(Boolean);
    };
    const records = JSON.parse((await lines({ study: adversarial[1].identity.studyHash, format: 'json' })).join('\n'));
    expect(records.map((r: { id: string }) => r.id)).toEqual([ids[3]]);
    expect(records[0]).toMatchObject({ verdict: 'block', studyHash: adversarial[1].identity.studyHash, scores: { uad: { score: 9.5 } } });

    const period = await lines({ from: new Date(now - 45 * DAY).toISOString(), to: new Date(now - 30 * DAY).toISOString(), verdict: 'forward' });
    expect(period.map((l) => JSON.parse(l).id)).toEqual([ids[0]]);
    const out = path.join(tmp, `export-${_name}.csv`);
    await runAuditQuery({ db, verdict: 'block,flag', format: 'csv', out }, undefined, quiet);
    expect(parseCsv(fs.readFileSync(out, 'utf8')).map((r) => r.id)).toEqual([ids[3], ids[2], ids[4]]);
    expect(fs.statSync(out).mode & 0o777).toBe(0o600);
    await expect(lines({ from: 'yesterday' })).rejects.toMatchObject({ code: 'USAGE' });

    await expect(runAuditPrune(db, '-1')).rejects.toMatchObject({ code: 'USAGE' });
    expect(await runAuditMigrate(db)).toContain('up to date\nversion: 003_dead_letters');
    const pruned = { stdout: await runAuditPrune(db, '30') };
    expect(pruned.stdout).toMatch(/: 1 decisions, 0 actions, 0 dead letters/); // the old block is still quarantined: kept
    expect(await lines({})).toHaveLength(4);
  });
});

it('refuses a missing SQLite file instead of creating one', () => {
  const res = warden('query', '--db', path.join(tmp, 'nope.sqlite'));
  expect(res.code).toBe(2);
  expect(res.stderr).toContain('USAGE');
  expect(fs.existsSync(path.join(tmp, 'nope.sqlite'))).toBe(false);
});
