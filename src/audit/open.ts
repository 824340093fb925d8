import { openPostgresAuditStore, type PostgresAuditStoreOptions } from './postgres';
import { openSqliteAuditStore, type SqliteAuditStoreOptions } from './sqlite';
import type { KyselyAuditStore } from './kysely-store';

/** True for postgres:// and postgresql:// connection URLs. */
export function isPostgresUrl(location: string): boolean {
  return /^postgres(ql)?:\/\//i.test(location);
}

/** A PostgreSQL URL opens the PostgreSQL store; anything else is a SQLite file path. Does not migrate. */
export function openAuditStore(location: string, options: SqliteAuditStoreOptions & PostgresAuditStoreOptions = {}): KyselyAuditStore {
  return isPostgresUrl(location) ? openPostgresAuditStore(location, options) : openSqliteAuditStore(location, options);
}

/** The location with any password replaced by ***, for messages and logs. */
export function redactLocation(location: string): string {
  if (!isPostgresUrl(location)) return location;
  try {
    const u = new URL(location);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'postgres://(unparsable URL)';
  }
}
