import type { Kysely, Migration, MigrationProvider } from 'kysely';

/**
 * The one migration list, shared by SQLite and PostgreSQL (kysely's schema builder writes each dialect's DDL).
 * Append only: a migration that has shipped is never edited; a change is a new entry. Names sort in order.
 * Kysely's Migrator records each applied name and time in `warden_migration` and serialises concurrent
 * migrators (an advisory lock on PostgreSQL, a lock row on SQLite), so replicas may all call migrate().
 *
 * SQLite adds one column per ALTER TABLE statement, hence the loops.
 */

// The builder is dialect-neutral; `any` keeps migrations independent of the evolving table types.
type Db = Kysely<any>;

const m001: Migration = {
  async up(db: Db) {
    await db.schema
      .createTable('decisions')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('time_ms', 'bigint', (c) => c.notNull())
      .addColumn('route', 'text', (c) => c.notNull())
      .addColumn('request_id', 'text', (c) => c.notNull())
      .addColumn('client', 'text')
      .addColumn('model_sha256', 'text')
      .addColumn('bundle_sha256', 'text')
      .addColumn('study_hash', 'text', (c) => c.notNull())
      .addColumn('series_hash', 'text')
      .addColumn('sop_hash', 'text', (c) => c.notNull())
      .addColumn('sop_class_uid', 'text')
      .addColumn('modality', 'text')
      .addColumn('transfer_syntax_uid', 'text')
      .addColumn('size_bytes', 'bigint', (c) => c.notNull())
      .addColumn('sha256', 'text', (c) => c.notNull())
      .addColumn('verdict', 'text', (c) => c.notNull())
      .addColumn('observed_verdict', 'text')
      .addColumn('prediction_label', 'text')
      .addColumn('prediction_probability', 'double precision')
      .addColumn('reasons_json', 'text', (c) => c.notNull())
      .addColumn('scores_json', 'text', (c) => c.notNull())
      .addColumn('timings_json', 'text', (c) => c.notNull())
      .addColumn('forwarded', 'integer', (c) => c.notNull())
      .addColumn('upstream_status', 'integer')
      .addColumn('upstream_failure_reason', 'integer')
      .execute();
    await db.schema.createIndex('decisions_time').on('decisions').column('time_ms').execute();
    await db.schema.createIndex('decisions_verdict_time').on('decisions').columns(['verdict', 'time_ms']).execute();
    await db.schema.createIndex('decisions_study').on('decisions').columns(['study_hash', 'time_ms']).execute();

    await db.schema
      .createTable('decision_reasons')
      .addColumn('decision_id', 'text', (c) => c.notNull().references('decisions.id').onDelete('cascade'))
      .addColumn('ordinal', 'integer', (c) => c.notNull())
      .addColumn('signal', 'text', (c) => c.notNull())
      .addColumn('code', 'text', (c) => c.notNull())
      .addColumn('detector', 'text')
      .addColumn('p_value', 'double precision')
      .addColumn('threshold', 'double precision')
      .addPrimaryKeyConstraint('decision_reasons_pk', ['decision_id', 'ordinal'])
      .execute();
    await db.schema.createIndex('decision_reasons_signal').on('decision_reasons').columns(['signal', 'decision_id']).execute();
    await db.schema.createIndex('decision_reasons_detector').on('decision_reasons').columns(['detector', 'decision_id']).execute();

    await db.schema
      .createTable('decision_scores')
      .addColumn('decision_id', 'text', (c) => c.notNull().references('decisions.id').onDelete('cascade'))
      .addColumn('detector', 'text', (c) => c.notNull())
      .addColumn('score', 'double precision')
      .addColumn('p_value', 'double precision')
      .addColumn('signal', 'text', (c) => c.notNull())
      .addPrimaryKeyConstraint('decision_scores_pk', ['decision_id', 'detector'])
      .execute();
    await db.schema.createIndex('decision_scores_detector').on('decision_scores').columns(['detector', 'p_value']).execute();
  },
  async down(db: Db) {
    await db.schema.dropTable('decision_scores').execute();
    await db.schema.dropTable('decision_reasons').execute();
    await db.schema.dropTable('decisions').execute();
  },
};

const QUARANTINE_COLUMNS: [string, 'text' | 'bigint' | 'integer'][] = [
  ['quarantine_state', 'text'],
  ['quarantine_changed_at_ms', 'bigint'],
  ['bytes_deleted_at_ms', 'bigint'],
  ['release_claim', 'text'],
  ['release_claimed_at_ms', 'bigint'],
  ['release_upstream_status', 'integer'],
  ['release_detail', 'text'],
  ['release_at_ms', 'bigint'],
];

const m002: Migration = {
  async up(db: Db) {
    for (const [name, type] of QUARANTINE_COLUMNS) {
      await db.schema.alterTable('decisions').addColumn(name, type).execute();
    }
    await db.schema.createIndex('decisions_quarantine_state').on('decisions').columns(['quarantine_state', 'quarantine_changed_at_ms']).execute();
    await db.schema.createIndex('decisions_sha256').on('decisions').column('sha256').execute();
    await db.schema
      .createTable('actions')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('decision_id', 'text', (c) => c.notNull().references('decisions.id').onDelete('cascade'))
      .addColumn('at_ms', 'bigint', (c) => c.notNull())
      .addColumn('action', 'text', (c) => c.notNull())
      .addColumn('actor', 'text', (c) => c.notNull())
      .addColumn('comment', 'text', (c) => c.notNull())
      .addColumn('outcome', 'text')
      .addColumn('upstream_status', 'integer')
      .addColumn('detail', 'text')
      .execute();
    await db.schema.createIndex('actions_decision').on('actions').columns(['decision_id', 'at_ms']).execute();
    await db.schema.createIndex('actions_time').on('actions').column('at_ms').execute();
  },
  async down(db: Db) {
    await db.schema.dropTable('actions').execute();
    await db.schema.dropIndex('decisions_sha256').execute();
    await db.schema.dropIndex('decisions_quarantine_state').execute();
    for (const [name] of [...QUARANTINE_COLUMNS].reverse()) {
      await db.schema.alterTable('decisions').dropColumn(name).execute();
    }
  },
};

const m003: Migration = {
  async up(db: Db) {
    await db.schema
      .createTable('dead_letters')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('at_ms', 'bigint', (c) => c.notNull())
      .addColumn('channel', 'text', (c) => c.notNull())
      .addColumn('event_type', 'text', (c) => c.notNull())
      .addColumn('target', 'text', (c) => c.notNull())
      .addColumn('payload_json', 'text', (c) => c.notNull())
      .addColumn('attempts', 'integer', (c) => c.notNull())
      .addColumn('last_error', 'text')
      .addColumn('last_status', 'integer')
      .addColumn('decision_id', 'text')
      .execute();
    await db.schema.createIndex('dead_letters_time').on('dead_letters').column('at_ms').execute();
  },
  async down(db: Db) {
    await db.schema.dropTable('dead_letters').execute();
  },
};

/** Every migration, in order. */
export const AUDIT_MIGRATIONS: Readonly<Record<string, Migration>> = {
  '001_decisions': m001,
  '002_quarantine_and_actions': m002,
  '003_dead_letters': m003,
};

export const MIGRATION_TABLE = 'warden_migration';
export const MIGRATION_LOCK_TABLE = 'warden_migration_lock';

export const migrationProvider: MigrationProvider = {
  getMigrations: async () => ({ ...AUDIT_MIGRATIONS }),
};
