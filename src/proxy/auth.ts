import type { NextFunction, Request, Response } from 'express';
import { createHash, timingSafeEqual } from 'node:crypto';
import * as fs from 'node:fs';
import { WardenError } from '../core/errors';
import { publish, type EventScope } from '../core/events';
import type { Role, WardenConfig } from '../config';
import { sendError } from './http-errors';

/**
 * Roles: separate credentials for senders (DICOMweb), reviewers (/ui and its API), admins (reload, configuration)
 * and metrics scrapers. A request carries `Authorization: Bearer <token>` (or HTTP Basic with the token as the
 * password, for browsers); the token is compared in constant time against every configured one (hashes of equal
 * length, every entry compared), never logged, and only the holder's *name* travels on (audit trail, events).
 *
 * A role nobody holds: sender and metrics routes are then open (a loopback or ingress-protected install; warned about
 * at start-up beyond loopback), reviewer and admin routes are closed — nobody can release, discard or reload without
 * a token made for it.
 */
export interface Principal {
  name: string;
  roles: ReadonlySet<Role>;
}

interface Entry { name: string; roles: Set<Role>; digest: Buffer }

const ANONYMOUS: Principal = Object.freeze({ name: 'anonymous', roles: new Set<Role>() });
const OPEN_WHEN_UNCONFIGURED: ReadonlySet<Role> = new Set<Role>(['sender', 'metrics']);

const digest = (token: string): Buffer => createHash('sha256').update(token, 'utf8').digest();

export class Credentials {
  readonly #entries: Entry[];

  constructor(entries: { name: string; roles: Role[]; token: string }[]) {
    this.#entries = entries.map((e) => ({ name: e.name, roles: new Set(e.roles), digest: digest(e.token) }));
  }

  /** The configured tokens (auth.tokens, plus the dicomwebToken / metricsToken shorthands), files and variables read. @throws CONFIG_INVALID */
  static fromConfig(auth: WardenConfig['auth'], env: NodeJS.ProcessEnv = process.env): Credentials {
    const entries: { name: string; roles: Role[]; token: string }[] = [];
    if (auth.dicomwebToken) entries.push({ name: 'sender', roles: ['sender'], token: auth.dicomwebToken });
    if (auth.metricsToken) entries.push({ name: 'metrics', roles: ['metrics'], token: auth.metricsToken });
    for (const t of auth.tokens) {
      let token = t.token;
      if (t.tokenFile) {
        try { token = fs.readFileSync(t.tokenFile, 'utf8').trim(); } catch (err) {
          throw new WardenError('CONFIG_INVALID', `auth.tokens "${t.name}": cannot read tokenFile ${t.tokenFile} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}).`);
        }
      }
      if (t.tokenEnv) token = env[t.tokenEnv] ?? null;
      if (!token || token.trim().length < 16) {
        throw new WardenError('CONFIG_INVALID', `auth.tokens "${t.name}": the token ${t.tokenEnv ? `in ${t.tokenEnv} ` : t.tokenFile ? `in ${t.tokenFile} ` : ''}is missing or shorter than 16 characters.`);
      }
      entries.push({ name: t.name, roles: t.roles, token: token.trim() });
    }
    const names = entries.map((e) => e.name);
    const dup = names.find((n, i) => names.indexOf(n) !== i);
    if (dup) throw new WardenError('CONFIG_INVALID', `auth: two tokens are named "${dup}"; names must be unique (they are what the audit trail records).`);
    return new Credentials(entries);
  }

  /** Whether some configured token carries this role. */
  hasRole(role: Role): boolean {
    return this.#entries.some((e) => e.roles.has(role));
  }

  /** The holder of the request's token; null when it carries none; undefined when it carries one nobody holds. */
  identify(req: Request): Principal | null | undefined {
    const presented = presentedToken(req.headers.authorization);
    if (presented === null) return null;
    const d = digest(presented);
    let found: Entry | undefined;
    for (const e of this.#entries) if (timingSafeEqual(d, e.digest) && !found) found = e;
    return found ? { name: found.name, roles: found.roles } : undefined;
  }
}

function presentedToken(header: string | undefined): string | null {
  if (!header) return null;
  const bearer = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (bearer) return bearer[1];
  const basic = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
  if (basic) {
    const text = Buffer.from(basic[1], 'base64').toString('utf8');
    const colon = text.indexOf(':');
    return colon >= 0 ? text.slice(colon + 1) : null;
  }
  return null;
}

/** The principal a request was admitted as (set by requireRole). */
export function principalOf(res: Response): Principal {
  return (res.locals.principal as Principal | undefined) ?? ANONYMOUS;
}

/**
 * Admits requests whose token holds `role`: 401 without valid credentials, 403 with credentials of another role.
 * `basic` adds a Basic challenge so that a browser asks for the token (the review page).
 */
export function requireRole(creds: Credentials, role: Role, opts: { scope: EventScope; route: string; basic?: boolean }) {
  return (req: Request, res: Response, next: NextFunction): void => {
    if (!creds.hasRole(role) && OPEN_WHEN_UNCONFIGURED.has(role)) { res.locals.principal = ANONYMOUS; next(); return; }
    const who = creds.identify(req);
    if (who && who.roles.has(role)) { res.locals.principal = who; next(); return; }
    const status = who ? 403 : 401;
    publish('authFailed', { scope: opts.scope, route: opts.route, status, ...(who ? { client: who.name } : {}) });
    if (who) { sendError(res, new WardenError('FORBIDDEN', `The token of "${who.name}" does not carry the ${role} role this route needs.`)); return; }
    // a browser answers a Basic challenge by asking for credentials: one challenge per header (Chromium reads them so)
    if (opts.basic) res.append('WWW-Authenticate', `Basic realm="warden ${role}", charset="UTF-8"`);
    res.append('WWW-Authenticate', `Bearer realm="warden ${role}"`);
    sendError(res, new WardenError('UNAUTHORIZED', `A valid token with the ${role} role is required (Authorization: Bearer …).`));
  };
}
