import * as fs from 'node:fs';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { Kysely, SqliteDialect } from 'kysely';
import { toWardenError } from '../core/errors';
import { KyselyAuditStore, type AuditStoreOptions } from './kysely-store';
import type { AuditDatabase } from './schema';

export interface SqliteAuditStoreOptions extends AuditStoreOptions {
  /** How long a writer waits for another process's lock before failing, ms (default 5000). */
  busyTimeoutMs?: number;
}

/**
 * The embedded default: one SQLite file in WAL mode (readers never block the writer; several processes may
 * share the file). synchronous=FULL so a record the gateway has answered for survives a power cut too, not
 * only a killed process. The file is created 0600.
 */
export function openSqliteAuditStore(file: string, options: SqliteAuditStoreOptions = {}): KyselyAuditStore {
  let database: Database.Database;
  try {
    fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true, mode: 0o700 });
    const existed = fs.existsSync(file);
    database = new Database(file);
    if (!existed) fs.chmodSync(file, 0o600);
    database.pragma(`busy_timeout = ${Math.max(0, Math.trunc(options.busyTimeoutMs ?? 5000))}`);
    database.pragma('journal_mode = WAL');
    database.pragma('synchronous = FULL');
    database.pragma('foreign_keys = ON');
  } catch (err) {
    throw toWardenError(err, 'AUDIT_STORE_FAILED', `The SQLite audit store ${path.basename(file)} could not be opened.`);
  }
  const db = new Kysely<AuditDatabase>({ dialect: new SqliteDialect({ database }) });
  return new KyselyAuditStore(db, 'sqlite', options);
}
