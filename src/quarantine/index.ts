/**
 * Quarantine: the original bytes of blocked instances, content-addressed and fsynced before the sender is
 * answered, released (exactly once) or discarded by reviewers, swept after a grace period, reconciled at start.
 */
export {
  Quarantine,
  type DiscardOutcome, type ForwardFn, type ForwardResult, type QuarantineOptions, type ReconcileReport,
  type ReleaseOutcome, type SweepReport,
} from './quarantine';
export { QuarantineFiles, isSha256, type DiskUsage, type PutResult, type StoredFile } from './files';
