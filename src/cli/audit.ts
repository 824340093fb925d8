import * as fs from 'node:fs';
import type { Writable } from 'node:stream';
import type { Command } from 'commander';
import { isPostgresUrl, openAuditStore, redactLocation, type AuditQuery, type AuditRecord, type AuditStore } from '../audit';
import { WardenError } from '../core/errors';
import { toCsv } from '../eval';

/**
 * `warden audit`: the trail from the command line, against a SQLite file or a PostgreSQL URL.
 *   warden audit query  --db trail.sqlite --from 2026-11-01 --to 2026-12-01 --format csv --out nov.csv
 *   warden audit query  --db postgres://… --study <hash> --format json
 *   warden audit migrate --db …        warden audit prune --db … --days 365
 * `export` is another name for `query`. Output holds hashes and attributes only, never patient identifiers.
 */

export interface AuditQueryOptions {
  db?: string;
  from?: string;
  to?: string;
  days?: string;
  study?: string;
  verdict?: string;
  signal?: string;
  status?: string;
  detector?: string;
  format?: string;
  out?: string;
  limit?: string;
}

const CSV_COLUMNS = [
  'id', 'time', 'route', 'request_id', 'client', 'study_hash', 'series_hash', 'sop_hash', 'sop_class_uid', 'modality',
  'transfer_syntax_uid', 'size_bytes', 'sha256', 'verdict', 'observed_verdict', 'prediction_label', 'prediction_probability',
  'reasons', 'scores', 'forwarded', 'upstream_status', 'upstream_failure_reason', 'quarantine_state', 'quarantine_changed_at',
  'release_upstream_status', 'bytes_deleted_at', 'model_sha256', 'bundle_sha256',
];

const iso = (ms: number | null | undefined) => (ms === null || ms === undefined ? '' : new Date(ms).toISOString());

/** One flat CSV row per record; reasons and scores in compact `a;b` lists. */
export function csvRow(r: AuditRecord): Record<string, unknown> {
  return {
    id: r.id, time: iso(r.time), route: r.route, request_id: r.requestId, client: r.client, study_hash: r.studyHash,
    series_hash: r.seriesHash, sop_hash: r.sopHash, sop_class_uid: r.sopClassUid, modality: r.modality,
    transfer_syntax_uid: r.transferSyntaxUid, size_bytes: r.sizeBytes, sha256: r.sha256, verdict: r.verdict,
    observed_verdict: r.observedVerdict, prediction_label: r.prediction?.label, prediction_probability: r.prediction?.probability,
    reasons: r.reasons.map((x) => [x.signal, x.code, x.detector ?? '', x.pValue ?? ''].join(':')).join(';'),
    scores: Object.entries(r.scores).map(([d, s]) => `${d}=${s.score ?? ''}/${s.pValue ?? ''}`).join(';'),
    forwarded: r.forwarded, upstream_status: r.upstreamStatus, upstream_failure_reason: r.upstreamFailureReason,
    quarantine_state: r.quarantine?.state, quarantine_changed_at: iso(r.quarantine?.changedAt),
    release_upstream_status: r.quarantine?.release?.upstreamStatus, bytes_deleted_at: iso(r.quarantine?.bytesDeletedAt),
    model_sha256: r.modelSha256, bundle_sha256: r.bundleSha256,
  };
}

function time(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  const t = Date.parse(value);
  if (!Number.isFinite(t)) throw new WardenError('USAGE', `--${name} must be an ISO 8601 date or time (got ${value}).`);
  return t;
}

function list<T extends string>(value: string | undefined): T[] | undefined {
  return value === undefined ? undefined : (value.split(',').map((s) => s.trim()).filter(Boolean) as T[]);
}

export function queryOf(opts: AuditQueryOptions, now = Date.now()): AuditQuery {
  const q: AuditQuery = { order: 'asc' };
  q.from = time(opts.from, 'from');
  q.to = time(opts.to, 'to');
  if (opts.days !== undefined) {
    const days = Number(opts.days);
    if (!(days > 0)) throw new WardenError('USAGE', `--days must be a positive number (got ${opts.days}).`);
    if (q.from !== undefined) throw new WardenError('USAGE', 'Use --days or --from, not both.');
    q.from = (q.to ?? now) - days * 86_400_000;
  }
  if (opts.study) q.studyHash = opts.study.toLowerCase();
  if (opts.verdict) q.verdict = list(opts.verdict);
  if (opts.signal) q.signal = opts.signal as AuditQuery['signal'];
  if (opts.status) q.status = list(opts.status);
  if (opts.detector) q.detector = opts.detector;
  return q;
}

function openExisting(db: string | undefined): AuditStore {
  if (!db) throw new WardenError('USAGE', 'Give the trail with --db <sqlite file | postgres://URL> (or WARDEN_AUDIT_DB).');
  if (!isPostgresUrl(db) && !fs.existsSync(db)) throw new WardenError('USAGE', `No audit database at ${db}.`);
  return openAuditStore(db);
}

async function write(out: Writable, text: string): Promise<void> {
  if (!out.write(text)) await new Promise<void>((r) => out.once('drain', () => r()));
}

/** Streams every matching record, page by page, as json | jsonl | csv. Returns how many were written. */
export async function exportTrail(store: AuditStore, q: AuditQuery, format: string, out: Writable, max = Infinity): Promise<number> {
  if (!['json', 'jsonl', 'csv'].includes(format)) throw new WardenError('USAGE', `--format must be json, jsonl or csv (got ${format}).`);
  let written = 0;
  if (format === 'json') await write(out, '[');
  for (let offset = 0; written < max; ) {
    const page = await store.query({ ...q, limit: Math.min(1000, max - written), offset });
    if (page.items.length === 0) break;
    for (const r of page.items) {
      if (format === 'csv') {
        const text = toCsv([csvRow(r)], CSV_COLUMNS);
        await write(out, written === 0 ? text : text.slice(text.indexOf('\n') + 1));
      } else if (format === 'jsonl') {
        await write(out, `${JSON.stringify(r)}\n`);
      } else {
        await write(out, `${written ? ',' : ''}\n${JSON.stringify(r)}`);
      }
      written++;
    }
    offset += page.items.length;
  }
  if (format === 'json') await write(out, written ? '\n]\n' : ']\n');
  if (format === 'csv' && written === 0) await write(out, `${CSV_COLUMNS.join(',')}\n`);
  return written;
}

export async function runAuditQuery(opts: AuditQueryOptions, stdout: Writable = process.stdout, stderr: Writable = process.stderr): Promise<number> {
  const store = openExisting(opts.db);
  const max = opts.limit === undefined ? Infinity : Number(opts.limit);
  if (!(max > 0)) throw new WardenError('USAGE', `--limit must be a positive integer (got ${opts.limit}).`);
  const out = opts.out ? fs.createWriteStream(opts.out, { mode: 0o600 }) : stdout;
  try {
    const n = await exportTrail(store, queryOf(opts), opts.format ?? 'jsonl', out, max);
    stderr.write(`warden audit: ${n} record${n === 1 ? '' : 's'} from ${redactLocation(opts.db!)}\n`);
    return n;
  } finally {
    if (out !== stdout) await new Promise<void>((r) => (out as fs.WriteStream).end(() => r()));
    await store.close();
  }
}

/** Migrates to the latest version; returns what to print. */
export async function runAuditMigrate(db: string | undefined): Promise<string> {
  if (!db) throw new WardenError('USAGE', 'Give the trail with --db <sqlite file | postgres://URL> (or WARDEN_AUDIT_DB).');
  const store = openAuditStore(db);
  try {
    const applied = await store.migrate();
    const all = await store.migrations();
    return `${applied.length ? `applied: ${applied.join(', ')}` : 'up to date'}\nversion: ${all.filter((m) => m.executedAt).map((m) => m.name).pop() ?? 'none'}`;
  } finally {
    await store.close();
  }
}

/** Prunes past the retention; returns what to print. */
export async function runAuditPrune(db: string | undefined, daysText: string): Promise<string> {
  const days = Number(daysText);
  if (!(days >= 0)) throw new WardenError('USAGE', `--days must be zero or more (got ${daysText}).`);
  const store = openExisting(db);
  try {
    const r = await store.prune({ olderThanDays: days });
    return `pruned before ${new Date(r.before).toISOString()}: ${r.decisions} decisions, ${r.actions} actions, ${r.deadLetters} dead letters`;
  } finally {
    await store.close();
  }
}

export function register(program: Command): void {
  const audit = program.command('audit').description('Query, export, migrate and prune the audit trail (SQLite file or PostgreSQL URL)');
  const dbOption = ['--db <location>', 'SQLite file or postgres://URL (default: $WARDEN_AUDIT_DB)'] as const;
  audit
    .command('query')
    .alias('export')
    .description('Records of a period or a study, oldest first, as JSON lines (default), JSON or CSV')
    .option(...dbOption)
    .option('--from <time>', 'from this time, inclusive (ISO 8601)')
    .option('--to <time>', 'until this time, exclusive (ISO 8601)')
    .option('--days <n>', 'the last n days (up to --to or now)')
    .option('--study <hash>', 'one study (its hashed StudyInstanceUID)')
    .option('--verdict <list>', 'forward,flag,block')
    .option('--signal <signal>', 'records with a reason of this signal (adversarial, domain, scope, error, study, input)')
    .option('--status <list>', 'quarantine states (quarantined, releasing, released, release_failed, discarded)')
    .option('--detector <name>', 'records with a reason naming this detector')
    .option('--format <format>', 'jsonl | json | csv', 'jsonl')
    .option('--out <file>', 'write to this file (0600) instead of stdout')
    .option('--limit <n>', 'at most n records')
    .action(async (opts: AuditQueryOptions) => {
      await runAuditQuery({ ...opts, db: opts.db ?? process.env.WARDEN_AUDIT_DB });
    });
  audit
    .command('migrate')
    .description('Create or upgrade the trail\'s tables to the latest version')
    .option(...dbOption)
    .action(async (opts: { db?: string }) => {
      console.log(await runAuditMigrate(opts.db ?? process.env.WARDEN_AUDIT_DB));
    });
  audit
    .command('prune')
    .description('Delete records and dead letters older than the retention (items still quarantined are kept)')
    .option(...dbOption)
    .requiredOption('--days <n>', 'retention in days')
    .action(async (opts: { db?: string; days: string }) => {
      console.log(await runAuditPrune(opts.db ?? process.env.WARDEN_AUDIT_DB, opts.days));
    });
}
