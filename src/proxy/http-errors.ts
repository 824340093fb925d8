import type { NextFunction, Request, Response } from 'express';
import type { Socket } from 'node:net';
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

/** How long a connection answered with Connection: close is kept reading (and dropping) what the client still sends. */
export const LINGER_MS = 2000;
const LINGERING = Symbol('warden.lingeringClose');

/**
 * Lingering close (as nginx does it). Node destroys a connection as soon as an answer with `Connection: close` is
 * written (socket.destroySoon); when the client is still sending a body nobody reads, its next bytes draw a TCP reset
 * and a client that had not yet read the answer loses it (found by `npm run fuzz`: a 405, a 415 and a 413 lost to a
 * reset). Instead the connection is half-closed after the answer, what arrives is read and dropped (not parsed: no
 * further request on it is served), and it is destroyed when the client closes its side or after LINGER_MS.
 */
export function lingeringClose() {
  return (req: Request, _res: Response, next: NextFunction): void => {
    const socket = req.socket as Socket & { [LINGERING]?: true };
    if (!socket[LINGERING]) {
      socket[LINGERING] = true;
      socket.destroySoon = function lingerThenDestroy(this: Socket): void {
        if (this.destroyed) return;
        this.removeAllListeners('data');
        this.on('data', () => { /* dropped */ });
        this.once('end', () => this.destroy());
        const timer = setTimeout(() => this.destroy(), LINGER_MS);
        timer.unref();
        this.once('close', () => clearTimeout(timer));
        this.end();
        this.resume();
      };
    }
    next();
  };
}
