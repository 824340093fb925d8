import { createHmac } from 'node:crypto';
import { Agent, request } from 'undici';
import type { SecurityEvent } from './events';

/**
 * Delivers security events to a webhook: POST of the event as JSON, signed (`X-Warden-Signature: sha256=<hex
 * HMAC-SHA-256 of the body>`), retried with exponential backoff on errors, timeouts and non-2xx answers; what cannot
 * be delivered after the retries (or is still queued at shutdown) is handed to `deadLetter` (the audit store), so
 * no event is dropped silently. One delivery at a time, in order; the queue is bounded.
 */
export interface WebhookOptions {
  url: string;
  secret: string;
  retries: number;
  backoffMs: number;
  timeoutMs: number;
  /** Events waiting beyond this are dead-lettered at once. Default 10,000. */
  maxQueue?: number;
  deadLetter: (event: SecurityEvent, attempts: number, lastError: string | null, lastStatus: number | null) => Promise<void>;
  onDelivered?: (event: SecurityEvent, attempts: number) => void;
}

export function signature(secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body, 'utf8').digest('hex')}`;
}

export class Webhook {
  readonly #opts: WebhookOptions;
  readonly #agent: Agent;
  readonly #queue: SecurityEvent[] = [];
  #running = false;
  #closed = false;
  #idle: Promise<void> = Promise.resolve();
  #wake: (() => void) | null = null;

  constructor(opts: WebhookOptions) {
    this.#opts = opts;
    this.#agent = new Agent({ connections: 2, headersTimeout: opts.timeoutMs, bodyTimeout: opts.timeoutMs });
  }

  /** Where events go, without credentials (for logs and dead-letter records). */
  get target(): string {
    const u = new URL(this.#opts.url);
    u.username = '';
    u.password = '';
    u.search = '';
    return u.toString();
  }

  send(event: SecurityEvent): void {
    if (this.#closed) { void this.#opts.deadLetter(event, 0, 'the gateway was shutting down', null); return; }
    if (this.#queue.length >= (this.#opts.maxQueue ?? 10_000)) { void this.#opts.deadLetter(event, 0, 'the webhook queue was full', null); return; }
    this.#queue.push(event);
    if (!this.#running) this.#idle = this.#drain();
  }

  async #drain(): Promise<void> {
    this.#running = true;
    try {
      while (this.#queue.length > 0 && !this.#closed) {
        const event = this.#queue.shift()!;
        await this.#deliver(event);
      }
    } finally {
      this.#running = false;
    }
  }

  async #deliver(event: SecurityEvent): Promise<void> {
    const body = JSON.stringify(event);
    const headers = {
      'content-type': 'application/json', 'x-warden-signature': signature(this.#opts.secret, body),
      'x-warden-event': event.type, 'x-warden-delivery': event.id, 'user-agent': 'warden-webhook/1',
    };
    let lastError: string | null = null;
    let lastStatus: number | null = null;
    const attempts = this.#opts.retries + 1;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      try {
        const res = await request(this.#opts.url, { method: 'POST', body, headers, dispatcher: this.#agent });
        await res.body.dump();
        lastStatus = res.statusCode;
        if (res.statusCode >= 200 && res.statusCode < 300) { this.#opts.onDelivered?.(event, attempt); return; }
        lastError = `HTTP ${res.statusCode}`;
      } catch (err) {
        lastError = (err as { code?: string }).code ?? (err as Error).message;
      }
      if (attempt < attempts && !this.#closed) await this.#sleep(this.#opts.backoffMs * 2 ** (attempt - 1));
      if (this.#closed) { await this.#opts.deadLetter(event, attempt, `${lastError}; the gateway shut down before a retry`, lastStatus); return; }
    }
    await this.#opts.deadLetter(event, attempts, lastError, lastStatus);
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => { this.#wake = null; resolve(); }, ms);
      timer.unref();
      this.#wake = () => { clearTimeout(timer); this.#wake = null; resolve(); };
    });
  }

  /** Stops: the delivery in flight ends (or is dead-lettered), everything still queued is dead-lettered. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#wake?.();
    await this.#idle.catch(() => undefined);
    for (const e of this.#queue.splice(0)) await this.#opts.deadLetter(e, 0, 'the gateway shut down before it was sent', null).catch(() => undefined);
    await this.#agent.close();
  }
}
