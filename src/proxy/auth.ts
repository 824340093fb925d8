import type { NextFunction, Request, Response } from 'express';
import { createHash, timingSafeEqual } from 'node:crypto';
import { WardenError } from '../core/errors';
import { sendError } from './http-errors';

/** Bearer-token check in constant time (hash both sides so lengths never leak). null token = open. */
export function bearerAuth(token: string | null, realm: string) {
  const expected = token ? createHash('sha256').update(token).digest() : null;
  return (req: Request, res: Response, next: NextFunction): void => {
    if (!expected) { next(); return; }
    const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
    if (m && timingSafeEqual(createHash('sha256').update(m[1]).digest(), expected)) { next(); return; }
    sendError(res, new WardenError('UNAUTHORIZED', `A valid bearer token is required for ${realm}.`), { 'WWW-Authenticate': `Bearer realm="${realm}"` });
  };
}
