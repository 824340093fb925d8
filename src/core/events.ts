import * as dc from 'node:diagnostics_channel';
import type { Decision, DetectorScore, Verdict } from './types';

/**
 * Stages publish, telemetry subscribes. Every stage announces what it did on a named `node:diagnostics_channel`
 * channel; src/metrics (and later the audit trail and alerts) subscribe. Publishing costs nothing when nobody
 * listens, and no stage imports a metric.
 *
 * Channels are process-wide, so every message carries the `scope` of the gateway (or pipeline) that published it:
 * a subscriber listens to one scope and ignores the rest (several gateways in one process, as in the tests, never
 * count each other's instances).
 */

export interface EventScope {
  readonly id: number;
}

let nextScope = 1;
export function createScope(): EventScope {
  return Object.freeze({ id: nextScope++ });
}

/** Route labels: the door an instance came through. */
export type Route = 'stow' | 'wado';

/** src/pipeline: one instance went through decode → … → detect (whatever its status). */
export interface InstanceScannedEvent {
  scope: EventScope;
  status: 'scanned' | 'skipped' | 'error';
  errorCode?: string;
  timings: Record<string, number>;
  scores?: Record<string, DetectorScore>;
}

/** src/proxy: the final Decision of one instance of a request (after the study rule). */
export interface InstanceDecidedEvent {
  scope: EventScope;
  route: Route;
  decision: Decision;
  /** Why an instance that was not scanned was not (out_of_scope, not_an_image), when so. */
  unscanned?: 'out_of_scope' | 'not_an_image';
  /** The part was spooled to disk while it was received. */
  spooled: boolean;
  requestId?: string;
  /** The sender's token name (never the token). */
  client?: string;
  /** HMAC hashes of the instance's UIDs (never the UIDs). */
  studyHash?: string;
  sopHash?: string;
  /** The audit record of the decision, when the trail is on. */
  recordId?: string;
  /** The original bytes were kept in quarantine. */
  quarantined?: boolean;
}

/** src/proxy: the worst verdict of one study of a request. */
export interface StudyDecidedEvent {
  scope: EventScope;
  route: Route;
  verdict: Verdict;
}

/** src/proxy: a request was answered (or refused), with the status sent and the error code when it failed. */
export interface RequestAnsweredEvent {
  scope: EventScope;
  route: Route;
  status: number;
  code?: string;
  /** Bytes of the multipart body read (STOW-RS request or scanned WADO-RS response). */
  bodyBytes?: number;
  /** Per-request stage durations, seconds (ingest, forward). */
  stages?: Record<string, number>;
  /** Refused because the gateway's scan limits were reached. */
  saturated?: boolean;
}

/** src/proxy/upstream: the upstream answered (status) or could not be reached ('error'). */
export interface UpstreamAnsweredEvent {
  scope: EventScope;
  method: string;
  status: number | 'error';
  seconds: number;
}

/** src/proxy: a request refused for its credentials (401 none / invalid, 403 wrong role). Never the token. */
export interface AuthFailedEvent {
  scope: EventScope;
  route: string;
  status: 401 | 403;
  /** The token holder's name when the token was valid but lacked the role. */
  client?: string;
}

/** src/review (or the admin API): a person acted on a quarantined instance. */
export interface ReviewActionEvent {
  scope: EventScope;
  action: 'release' | 'discard';
  /** Audit record id (not an identifier of the patient or study). */
  recordId: string;
  studyHash?: string;
  sopHash?: string;
  actor: string;
  outcome: string;
  upstreamStatus?: number | null;
}

/** Any stage: an error worth counting that no other event carries (e.g. an upstream error relayed). */
export interface ErrorEvent {
  scope: EventScope;
  code: string;
}

export const channels = {
  instanceScanned: dc.channel('warden:instance:scanned'),
  instanceDecided: dc.channel('warden:instance:decided'),
  studyDecided: dc.channel('warden:study:decided'),
  requestAnswered: dc.channel('warden:request:answered'),
  upstreamAnswered: dc.channel('warden:upstream:answered'),
  error: dc.channel('warden:error'),
  authFailed: dc.channel('warden:auth:failed'),
  reviewAction: dc.channel('warden:review:action'),
} as const;

export interface EventMap {
  instanceScanned: InstanceScannedEvent;
  instanceDecided: InstanceDecidedEvent;
  studyDecided: StudyDecidedEvent;
  requestAnswered: RequestAnsweredEvent;
  upstreamAnswered: UpstreamAnsweredEvent;
  error: ErrorEvent;
  authFailed: AuthFailedEvent;
  reviewAction: ReviewActionEvent;
}

/** Publishes only when someone listens (building the message is skipped otherwise). */
export function publish<K extends keyof EventMap>(name: K, message: EventMap[K] | (() => EventMap[K])): void {
  const channel = channels[name];
  if (!channel.hasSubscribers) return;
  channel.publish(typeof message === 'function' ? (message as () => EventMap[K])() : message);
}

/** Subscribes to the events of one scope; returns the unsubscribe function. */
export function subscribe<K extends keyof EventMap>(name: K, scope: EventScope, handler: (message: EventMap[K]) => void): () => void {
  const listener = (message: unknown): void => {
    if ((message as { scope?: EventScope }).scope === scope) handler(message as EventMap[K]);
  };
  channels[name].subscribe(listener);
  return () => { channels[name].unsubscribe(listener); };
}
