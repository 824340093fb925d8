/**
 * Table shapes as the queries see them (after the latest migration). Times are epoch milliseconds in BIGINT
 * columns (one representation for both dialects; PostgreSQL's int8 is parsed to a number by the store).
 * Booleans are 0/1 integers for the same reason.
 */

export interface DecisionsTable {
  id: string;
  time_ms: number;
  route: string;
  request_id: string;
  client: string | null;
  model_sha256: string | null;
  bundle_sha256: string | null;
  study_hash: string;
  series_hash: string | null;
  sop_hash: string;
  sop_class_uid: string | null;
  modality: string | null;
  transfer_syntax_uid: string | null;
  size_bytes: number;
  sha256: string;
  verdict: string;
  observed_verdict: string | null;
  prediction_label: string | null;
  prediction_probability: number | null;
  reasons_json: string;
  scores_json: string;
  timings_json: string;
  forwarded: number;
  upstream_status: number | null;
  upstream_failure_reason: number | null;
  // migration 002
  quarantine_state: string | null;
  quarantine_changed_at_ms: number | null;
  bytes_deleted_at_ms: number | null;
  release_claim: string | null;
  release_claimed_at_ms: number | null;
  release_upstream_status: number | null;
  release_detail: string | null;
  release_at_ms: number | null;
}

export interface DecisionReasonsTable {
  decision_id: string;
  ordinal: number;
  signal: string;
  code: string;
  detector: string | null;
  p_value: number | null;
  threshold: number | null;
}

export interface DecisionScoresTable {
  decision_id: string;
  detector: string;
  /** null when the detector's score was not finite (an unscorable instance). */
  score: number | null;
  p_value: number | null;
  signal: string;
}

export interface ActionsTable {
  id: string;
  decision_id: string;
  at_ms: number;
  action: string;
  actor: string;
  comment: string;
  outcome: string | null;
  upstream_status: number | null;
  detail: string | null;
}

export interface DeadLettersTable {
  id: string;
  at_ms: number;
  channel: string;
  event_type: string;
  target: string;
  payload_json: string;
  attempts: number;
  last_error: string | null;
  last_status: number | null;
  decision_id: string | null;
}

export interface AuditDatabase {
  decisions: DecisionsTable;
  decision_reasons: DecisionReasonsTable;
  decision_scores: DecisionScoresTable;
  actions: ActionsTable;
  dead_letters: DeadLettersTable;
}
