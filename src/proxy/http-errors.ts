import type { Request, Response } from 'express';
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

/**
 * After refusing a request whose body was not read to the end (413, 408, a broken body): the answer says
 * `Connection: close`; once it has gone out the socket gets a moment for the client to read it, then is destroyed, so
 * an endless or stalled body never holds the connection (or its reader) open.
 */
export function closeAfterAnswer(req: Request, res: Response, graceMs = 1000): void {
  if (req.complete) return;
  res.once('finish', () => {
    const timer = setTimeout(() => req.socket.destroy(), graceMs);
    timer.unref();
  });
  res.once('close', () => { if (!res.writableFinished) req.socket.destroy(); });
}
