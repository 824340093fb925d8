/**
 * The audit trail's contract: what a decision record holds, how it is queried, and the quarantine state
 * machine whose source of truth is the store. Input types are structural: the policy's Decision, the
 * proxy's identity and context satisfy them without this module importing either.
 *
 * Never patient identifiers: study/series/SOP UIDs arrive already hashed (HMAC) by the caller and are
 * rejected unless they look like hex digests; the SOP class UID (not identifying) is the only raw UID.
 */

export type AuditVerdict = 'forward' | 'flag' | 'block';
export type AuditSignal = 'adversarial' | 'domain' | 'scope' | 'error' | 'study' | 'input';
export type AuditRoute = 'stow' | 'wado' | 'release';

/** One structured reason of a Decision. */
export interface AuditReason {
  readonly signal: AuditSignal;
  readonly code: string;
  readonly detector?: string;
  readonly pValue?: number;
  readonly threshold?: number;
}

export interface AuditDetectorScore {
  readonly score: number;
  readonly pValue: number;
  readonly signal: 'adversarial' | 'domain';
}

export interface StoredDetectorScore {
  score: number | null;
  pValue: number | null;
  signal: 'adversarial' | 'domain';
}

/** The per-instance Decision, as far as the trail needs it. */
export interface AuditDecisionInput {
  readonly verdict: AuditVerdict;
  readonly reasons: readonly AuditReason[];
  /** Observe mode: the verdict the policy would have given (a verdict or an object carrying one). */
  readonly observed?: AuditVerdict | { readonly verdict: AuditVerdict } | null;
  readonly scores?: Readonly<Record<string, AuditDetectorScore>>;
  readonly prediction?: { readonly label: string; readonly probability: number } | null;
  /** Per-stage timings, milliseconds. */
  readonly timings?: Readonly<Record<string, number>>;
}

/** What identifies an instance in the trail: hashes only, plus non-identifying attributes. */
export interface AuditIdentityInput {
  /** HMAC of the StudyInstanceUID, hex. */
  readonly studyHash: string;
  readonly seriesHash?: string | null;
  /** HMAC of the SOPInstanceUID, hex. */
  readonly sopHash: string;
  readonly sopClassUid?: string | null;
  readonly modality?: string | null;
  readonly transferSyntaxUid?: string | null;
  readonly sizeBytes: number;
  /** sha256 of the original bytes, hex (64 characters). */
  readonly sha256: string;
}

export interface AuditContextInput {
  readonly time: Date | number;
  readonly route: AuditRoute;
  readonly requestId: string;
  /** The client's token *name*; never a token. */
  readonly client?: string | null;
  readonly modelSha256?: string | null;
  readonly bundleSha256?: string | null;
  readonly forwarded: boolean;
  readonly upstreamStatus?: number | null;
  /** DICOM FailureReason given to the sender, when one was. */
  readonly upstreamFailureReason?: number | null;
}

export interface RecordDecisionInput {
  readonly decision: AuditDecisionInput;
  readonly identity: AuditIdentityInput;
  readonly context: AuditContextInput;
  /** Set when the original bytes were put into quarantine (content address = identity.sha256). */
  readonly quarantined?: boolean;
}

/**
 * Quarantine states. `quarantined → releasing → released | release_failed`; `release_failed` may be released
 * again; `quarantined | release_failed → discarded`. The bytes of released and discarded items are deleted
 * by the sweeper after a grace period (bytesDeletedAt); the record stays.
 */
export type QuarantineState = 'quarantined' | 'releasing' | 'released' | 'release_failed' | 'discarded';
export const QUARANTINE_STATES: readonly QuarantineState[] = ['quarantined', 'releasing', 'released', 'release_failed', 'discarded'];

export interface QuarantineStatus {
  state: QuarantineState;
  /** Epoch ms of the last state change. */
  changedAt: number;
  /** Epoch ms the bytes were deleted from disk; null while they are kept. */
  bytesDeletedAt: number | null;
  /** Outcome of the last release attempt. */
  release: { upstreamStatus: number | null; detail: string | null; at: number | null } | null;
}

export type AuditActionKind = 'release' | 'discard' | 'note';

export interface AuditAction {
  id: string;
  decisionId: string;
  /** Epoch ms. */
  at: number;
  action: AuditActionKind;
  actor: string;
  comment: string;
  /** released | release_failed | discarded | a free word for notes. */
  outcome: string | null;
  upstreamStatus: number | null;
  detail: string | null;
}

export interface RecordActionInput {
  readonly decisionId: string;
  readonly action: AuditActionKind;
  readonly actor: string;
  /** Required: a reviewer's or admin's reason, in words. */
  readonly comment: string;
  readonly at?: Date | number;
  readonly outcome?: string | null;
  readonly upstreamStatus?: number | null;
  readonly detail?: string | null;
}

/** A decision as stored. Times are epoch milliseconds. */
export interface AuditRecord {
  id: string;
  time: number;
  route: AuditRoute;
  requestId: string;
  client: string | null;
  modelSha256: string | null;
  bundleSha256: string | null;
  studyHash: string;
  seriesHash: string | null;
  sopHash: string;
  sopClassUid: string | null;
  modality: string | null;
  transferSyntaxUid: string | null;
  sizeBytes: number;
  sha256: string;
  verdict: AuditVerdict;
  observedVerdict: AuditVerdict | null;
  prediction: { label: string; probability: number } | null;
  reasons: AuditReason[];
  /** As recorded; a score or p-value that was not a finite number is null. */
  scores: Record<string, StoredDetectorScore>;
  timings: Record<string, number>;
  forwarded: boolean;
  upstreamStatus: number | null;
  upstreamFailureReason: number | null;
  quarantine: QuarantineStatus | null;
  /** Only filled by `get`: the reviewer/admin actions on this record, oldest first. */
  actions?: AuditAction[];
}

export interface AuditQuery {
  /** Inclusive lower bound (Date or epoch ms). */
  from?: Date | number;
  /** Exclusive upper bound (Date or epoch ms). */
  to?: Date | number;
  verdict?: AuditVerdict | readonly AuditVerdict[];
  /** Records with at least one reason of this signal. */
  signal?: AuditSignal;
  studyHash?: string;
  /** Records with at least one reason naming this detector. */
  detector?: string;
  /** Quarantine state(s). */
  status?: QuarantineState | readonly QuarantineState[];
  route?: AuditRoute;
  /** Page size, 1..1000 (default 50). */
  limit?: number;
  offset?: number;
  /** By time; newest first by default. */
  order?: 'asc' | 'desc';
}

export interface AuditPage {
  items: AuditRecord[];
  total: number;
  limit: number;
  offset: number;
}

export interface DeadLetterInput {
  readonly at?: Date | number;
  /** What could not be delivered, e.g. 'webhook'. */
  readonly channel: string;
  /** Event type, e.g. 'block'. */
  readonly eventType: string;
  /** Where it was going (no credentials: the caller strips them). */
  readonly target: string;
  readonly payload: unknown;
  readonly attempts: number;
  readonly lastError?: string | null;
  readonly lastStatus?: number | null;
  readonly decisionId?: string | null;
}

export interface DeadLetter {
  id: string;
  at: number;
  channel: string;
  eventType: string;
  target: string;
  payload: unknown;
  attempts: number;
  lastError: string | null;
  lastStatus: number | null;
  decisionId: string | null;
}

export interface PruneResult {
  /** Cut-off, epoch ms: rows older than this were deleted. */
  before: number;
  decisions: number;
  actions: number;
  deadLetters: number;
}

export interface MigrationStatus {
  name: string;
  executedAt: Date | null;
}

/** A row that refers to a quarantined file, for the sweeper and reconcile. */
export interface QuarantineHolder {
  id: string;
  sha256: string;
  sizeBytes: number;
  state: QuarantineState;
  changedAt: number;
  bytesDeletedAt: number | null;
}

export type ClaimResult = { claimed: true } | { claimed: false; record: AuditRecord };

/**
 * The one repository interface of the trail. Two implementations share it (SQLite, PostgreSQL); the quarantine
 * drives its state machine only through the compare-and-set methods below, so two processes sharing one
 * database cannot both release an item.
 */
export interface AuditStore {
  readonly dialect: 'sqlite' | 'postgres';
  /** Runs the versioned migrations up to the latest; returns the names applied by this call. */
  migrate(): Promise<string[]>;
  /** Every known migration and when it was applied (null: pending). */
  migrations(): Promise<MigrationStatus[]>;
  /** @returns the new record's id. @throws AUDIT_INPUT_INVALID for anything that is not a hash where a hash belongs */
  recordDecision(input: RecordDecisionInput): Promise<string>;
  /** Records a reviewer's or admin's action. @throws AUDIT_INPUT_INVALID (empty actor or comment), AUDIT_RECORD_NOT_FOUND */
  recordAction(input: RecordActionInput): Promise<AuditAction>;
  recordDeadLetter(input: DeadLetterInput): Promise<string>;
  listDeadLetters(opts?: { limit?: number; offset?: number }): Promise<{ items: DeadLetter[]; total: number }>;
  query(q?: AuditQuery): Promise<AuditPage>;
  /** One record with its actions, or null. */
  get(id: string): Promise<AuditRecord | null>;
  /**
   * Deletes decisions (with their reasons, scores and actions), and dead letters, older than `olderThanDays`
   * (default: the store's retentionDays). Records whose quarantined bytes are still kept are never pruned.
   */
  prune(opts?: { olderThanDays?: number; now?: Date | number }): Promise<PruneResult>;
  close(): Promise<void>;

  // Quarantine state machine (compare-and-set; each transition writes its action row in the same transaction).
  /** quarantined | release_failed → releasing, owned by claimId. */
  claimRelease(id: string, claim: { claimId: string; actor: string; comment: string; at?: number }): Promise<ClaimResult>;
  /** releasing(claimId) → released | release_failed, with the outcome and its action row. false if the claim was lost. */
  completeRelease(id: string, claimId: string, outcome: { ok: boolean; upstreamStatus: number | null; detail?: string | null; actor: string; comment: string; at?: number }): Promise<boolean>;
  /** quarantined | release_failed → discarded, with its action row. */
  discard(id: string, input: { actor: string; comment: string; at?: number }): Promise<ClaimResult>;
  /** releasing items whose claim is older than `claimedBefore` → release_failed (the process died mid-release). */
  failStaleReleases(claimedBefore: number, detail: string, at?: number): Promise<string[]>;
  /** Every record that refers to this content address. */
  quarantineHolders(sha256: string): Promise<QuarantineHolder[]>;
  /** Content addresses of records whose bytes are kept (bytesDeletedAt null). */
  keptQuarantineAddresses(): Promise<Set<string>>;
  /** Addresses with a released or discarded record whose state changed before the cut-offs and whose bytes are kept. */
  sweepCandidates(cutoffs: { discardedBefore: number; releasedBefore: number }, limit?: number): Promise<string[]>;
  /** Marks the bytes of these records deleted. */
  markBytesDeleted(ids: readonly string[], at?: number): Promise<void>;
}
