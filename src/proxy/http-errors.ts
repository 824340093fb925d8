import type { Response } from 'express';
import { WardenError, httpStatusOf, type ErrorCode } from '../core/errors';

/**
 * Error answers outside the PS3.18 body (400, 401, 404, 405, 413, 415, 502, 503…): JSON `{error: {code, message}}`
 * with the status the error catalogue gives the code. The one place an error becomes an HTTP status.
 */
export function sendError(res: Response, err: WardenError, headers: Record<string, string> = {}): void {
  if (res.headersSent) { res.destroy(); return; }
  res.status(err.status).set(headers).type('application/json').send(JSON.stringify({ error: { code: err.code, message: err.message } }));
}

/** Shorthand: a new WardenError answered at once. */
export function refuse(res: Response, code: ErrorCode, message: string, headers: Record<string, string> = {}): number {
  sendError(res, new WardenError(code, message), headers);
  return httpStatusOf(code);
}
