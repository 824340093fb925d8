/**
 * The audit trail: every decision, reviewer/admin action and undeliverable alert, in SQLite (embedded default)
 * or PostgreSQL (several replicas), behind one AuditStore interface with versioned migrations.
 */
export type {
  AuditAction, AuditActionKind, AuditContextInput, AuditDecisionInput, AuditDetectorScore, AuditIdentityInput,
  AuditPage, AuditQuery, AuditReason, AuditRecord, AuditRoute, AuditSignal, AuditStore, AuditVerdict, ClaimResult,
  DeadLetter, DeadLetterInput, MigrationStatus, PruneResult, QuarantineHolder, QuarantineState, QuarantineStatus,
  RecordActionInput, RecordDecisionInput, StoredDetectorScore,
} from './types';
export { QUARANTINE_STATES } from './types';
export { KyselyAuditStore, type AuditStoreOptions } from './kysely-store';
export { openSqliteAuditStore, type SqliteAuditStoreOptions } from './sqlite';
export { openPostgresAuditStore, type PostgresAuditStoreOptions } from './postgres';
export { openAuditStore, isPostgresUrl, redactLocation } from './open';
export { AUDIT_MIGRATIONS, MIGRATION_TABLE } from './migrations';
export { VERDICTS, SIGNALS } from './validate';
