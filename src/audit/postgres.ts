import { Kysely, PostgresDialect } from 'kysely';
import { Pool, types as pgTypes } from 'pg';
import { KyselyAuditStore, type AuditStoreOptions } from './kysely-store';
import type { AuditDatabase } from './schema';

export interface PostgresAuditStoreOptions extends AuditStoreOptions {
  /** Connections in this process's pool (default 5). */
  maxConnections?: number;
  /** Errors of idle pooled connections (the server restarted, the network dropped); default: ignored, the pool reconnects. */
  onIdleError?: (err: Error) => void;
}

const INT8_OID = 20;

/**
 * PostgreSQL, for several replicas sharing one trail. BIGINT (epoch ms, counts) is parsed to a JavaScript
 * number on this pool only (milliseconds stay below 2^53 for the next 285,000 years).
 */
export function openPostgresAuditStore(connectionString: string, options: PostgresAuditStoreOptions = {}): KyselyAuditStore {
  const pool = new Pool({
    connectionString,
    max: options.maxConnections ?? 5,
    types: {
      getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
        oid === INT8_OID ? (v: string) => Number(v) : pgTypes.getTypeParser(oid, format as 'text')) as typeof pgTypes.getTypeParser,
    },
  });
  pool.on('error', (err) => options.onIdleError?.(err));
  const db = new Kysely<AuditDatabase>({ dialect: new PostgresDialect({ pool }) });
  return new KyselyAuditStore(db, 'postgres', options);
}
