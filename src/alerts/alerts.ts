import * as fs from 'node:fs';
import { WardenError } from '../core/errors';
import { subscribe, type EventScope } from '../core/events';
import { authEvent, decisionEvent, reviewEvent, type SecurityEvent } from './events';
import { Webhook } from './webhook';

/**
 * The alert side channel: subscribes to one gateway's events, turns the security-relevant ones into SecurityEvents
 * and hands them to the JSON-lines stream and the webhook.
 */
export interface AlertsOptions {
  scope: EventScope;
  /** JSON lines on this stream (stdout). null = off. */
  lines: NodeJS.WritableStream | null;
  webhook: null | {
    url: string; secret: string | null; secretFile: string | null; events: string[]; retries: number; backoffMs: number; timeoutMs: number;
  };
  /** Where undeliverable webhook events are kept (the audit store's dead letters). */
  deadLetter: (event: SecurityEvent, target: string, attempts: number, lastError: string | null, lastStatus: number | null) => Promise<void>;
}

export interface Alerts {
  close(): Promise<void>;
}

export function startAlerts(opts: AlertsOptions): Alerts {
  let webhook: Webhook | null = null;
  let wanted = new Set<string>();
  if (opts.webhook) {
    const w = opts.webhook;
    let secret = w.secret;
    if (!secret && w.secretFile) {
      try { secret = fs.readFileSync(w.secretFile, 'utf8').trim(); } catch (err) {
        throw new WardenError('CONFIG_INVALID', `alerts.webhook.secretFile ${w.secretFile} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}).`);
      }
    }
    if (!secret || secret.length < 16) throw new WardenError('CONFIG_INVALID', 'alerts.webhook needs a secret (alerts.webhook.secret or secretFile) of at least 16 characters: receivers must be able to check where events come from.');
    wanted = new Set(w.events);
    const hook: Webhook = new Webhook({
      url: w.url, secret, retries: w.retries, backoffMs: w.backoffMs, timeoutMs: w.timeoutMs,
      deadLetter: (event, attempts, lastError, lastStatus) => opts.deadLetter(event, hook.target, attempts, lastError, lastStatus),
    });
    webhook = hook;
  }
  const emit = (event: SecurityEvent | null): void => {
    if (!event) return;
    opts.lines?.write(`${JSON.stringify(event)}\n`);
    if (webhook && wanted.has(event.type)) webhook.send(event);
  };
  const off = [
    subscribe('instanceDecided', opts.scope, (e) => emit(decisionEvent(e))),
    subscribe('reviewAction', opts.scope, (e) => emit(reviewEvent(e))),
    subscribe('authFailed', opts.scope, (e) => emit(authEvent(e))),
  ];
  return {
    async close() {
      for (const f of off) f();
      await webhook?.close();
    },
  };
}
