/** Security events for security teams: JSON lines on stdout (SIEMs) and a signed, retried webhook (docs/events.md). */
export { authEvent, decisionEvent, reviewEvent, type SecurityEvent, type SecurityEventType } from './events';
export { Webhook, signature, type WebhookOptions } from './webhook';
export { startAlerts, type Alerts, type AlertsOptions } from './alerts';
