/**
 * The review page: an Express 5 Router with every dependency injected. The gateway mounts it (at /ui) behind
 * the reviewer role; this router protects nothing itself except its POST actions against cross-site requests
 * (same-origin check). HTML pages and a JSON API (/api/…) serve the same data and actions.
 *
 *   GET  /                                list with filters (verdict, signal, status, time range, study hash)
 *   GET  /instances/:id                   one instance: thumbnail, prediction, detector plots, reasons, history
 *   GET  /instances/:id/thumbnail.png
 *   GET  /instances/:id/{release|discard} the confirmation step (comment required)
 *   POST /instances/:id/{release|discard} form post from that step
 *   GET  /api/instances  · /api/instances/:id  · /api/instances/:id/thumbnail.png
 *   GET  /api/detectors/:name/calibration · /api/quarantine/usage
 *   POST /api/instances/:id/{release|discard}   JSON {comment}
 */
import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import type { AuditQuery, AuditRecord, AuditStore } from '../audit';
import { QUARANTINE_STATES, SIGNALS, VERDICTS } from '../audit';
import { WardenError, httpStatusOf, isWardenError } from '../core/errors';
import type { ForwardFn, Quarantine } from '../quarantine';
import { canRelease, confirmPage, detailPage, errorPage, listPage, type DetectorPlot, type ListFilters } from './pages';
import { calibrationPlotSvg } from './plot';
import { quarantineThumbnails } from './thumbnail';

export interface ReviewRouterDeps {
  audit: AuditStore;
  quarantine: Quarantine;
  /** Forwards released bytes to the upstream (the gateway's STOW-RS client). */
  forward: ForwardFn;
  /** The reviewer's name for the trail (from the gateway's authentication; never a token). */
  actor: (req: Request) => string;
  /** PNG bytes of an instance, null when none can be shown. Default: rendered from the quarantined bytes. */
  thumbnail?: (id: string) => Promise<Buffer | null>;
  /** A detector's clean calibration scores (sorted), null when unknown. Default: none. */
  calibration?: (detector: string) => Promise<ArrayLike<number> | null> | ArrayLike<number> | null;
  /** Origins besides the request's own that may post actions (a reverse proxy that rewrites Host). */
  allowedOrigins?: string[];
  /** Rows per page in the list (default 50). */
  pageSize?: number;
  /** The p-value at or below which a detector's marker is drawn as alarming (default 0.01). */
  alarmPValue?: number;
  /** Errors that are not the client's fault (logged by the gateway; no identifiers in them). */
  onError?: (err: unknown) => void;
  /** Told of every release and discard once it is recorded (the gateway's events and alerts). */
  onAction?: (action: { action: 'release' | 'discard'; id: string; actor: string; outcome: string; upstreamStatus?: number | null; record: AuditRecord | null }) => void;
}

/** The HTTP status of a failure: the error catalogue's (the one table). */
function statusOf(err: unknown): number {
  return isWardenError(err) ? httpStatusOf(err.code) : 500;
}

function securityHeaders(res: Response): void {
  res.set({
    'Content-Security-Policy': "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    'X-Content-Type-Options': 'nosniff',
    // same-origin, not no-referrer: with no-referrer Chromium sends `Origin: null` on form posts, which the CSRF check refuses.
    'Referrer-Policy': 'same-origin',
    'Cache-Control': 'no-store',
  });
}

/**
 * CSRF defence for state-changing requests: a browser always sends Origin (or at least Sec-Fetch-Site) on a
 * POST; it must be this origin. A request with neither is not from a browser form and is accepted only as
 * JSON (which a cross-site page cannot send without a CORS preflight, which this router never answers).
 */
export function isSameOrigin(req: Request, allowedOrigins: readonly string[] = []): boolean {
  const origin = req.get('origin');
  if (origin !== undefined) {
    if (allowedOrigins.includes(origin)) return true;
    try {
      return origin !== 'null' && new URL(origin).host === req.get('host');
    } catch {
      return false;
    }
  }
  const site = req.get('sec-fetch-site');
  if (site !== undefined) return site === 'same-origin' || site === 'none';
  return req.is('application/json') === 'application/json';
}

/** datetime-local (no zone: read as UTC) or ISO text → epoch ms. */
function parseTime(value: string | undefined, field: string): number | undefined {
  if (!value) return undefined;
  const t = Date.parse(/[zZ]|[+-]\d\d:\d\d$/.test(value) ? value : `${value}Z`);
  if (!Number.isFinite(t)) throw new WardenError('AUDIT_INPUT_INVALID', `The ${field} time is not a date.`);
  return t;
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

function filtersOf(req: Request): ListFilters {
  const q = req.query as Record<string, unknown>;
  return { verdict: str(q.verdict), signal: str(q.signal), status: str(q.status), study: str(q.study)?.trim().toLowerCase(), from: str(q.from), to: str(q.to) };
}

function pick<T extends string>(value: string, allowed: readonly T[], what: string): T {
  if (!(allowed as readonly string[]).includes(value)) throw new WardenError('AUDIT_INPUT_INVALID', `Unknown ${what} filter.`);
  return value as T;
}

function auditQueryOf(f: ListFilters, limit: number, offsetText: unknown): AuditQuery {
  const offset = offsetText === undefined ? 0 : Number(offsetText);
  const q: AuditQuery = { limit, offset: Number.isInteger(offset) && offset >= 0 ? offset : 0 };
  if (f.verdict) q.verdict = pick(f.verdict, VERDICTS, 'verdict');
  if (f.signal) q.signal = pick(f.signal, SIGNALS, 'signal');
  if (f.status) q.status = pick(f.status, QUARANTINE_STATES, 'quarantine state');
  if (f.study) q.studyHash = f.study;
  q.from = parseTime(f.from, 'from');
  q.to = parseTime(f.to, 'to');
  return q;
}

export function createReviewRouter(deps: ReviewRouterDeps): Router {
  const { audit, quarantine, forward } = deps;
  const thumbnail = deps.thumbnail ?? quarantineThumbnails(quarantine);
  const pageSize = deps.pageSize ?? 50;
  const alarm = deps.alarmPValue ?? 0.01;
  const allowed = deps.allowedOrigins ?? [];
  const router = express.Router({ strict: false });
  const forms = express.urlencoded({ extended: false, limit: '16kb' });
  const json = express.json({ limit: '16kb' });

  const base = (req: Request) => req.baseUrl;
  const mustGet = async (id: string): Promise<AuditRecord> => {
    const rec = await audit.get(id);
    if (!rec) throw new WardenError('AUDIT_RECORD_NOT_FOUND', 'No audit record has this id.');
    return rec;
  };
  const plotsOf = async (r: AuditRecord): Promise<DetectorPlot[]> => Promise.all(Object.entries(r.scores).map(async ([detector, s]) => {
    let cal: ArrayLike<number> | null = null;
    try {
      cal = (await deps.calibration?.(detector)) ?? null;
    } catch (err) {
      deps.onError?.(err);
    }
    return {
      detector, signal: s.signal, score: s.score, pValue: s.pValue,
      svg: cal ? calibrationPlotSvg({ detector, calibration: cal, score: s.score, pValue: s.pValue, alarming: s.pValue !== null && s.pValue <= alarm }) : null,
    };
  }));
  const hasBytes = (r: AuditRecord) => !!r.quarantine && r.quarantine.bytesDeletedAt === null;
  const requireSameOrigin = (req: Request) => {
    if (!isSameOrigin(req, allowed)) throw new WardenError('REVIEW_ORIGIN_REJECTED', 'Actions must come from the review page itself.');
  };
  const act = async (req: Request, action: 'release' | 'discard', comment: unknown) => {
    const id = String(req.params.id);
    const text = typeof comment === 'string' ? comment : '';
    const actor = deps.actor(req);
    const outcome = action === 'release'
      ? await quarantine.release(id, actor, text, forward)
      : await quarantine.discard(id, actor, text);
    if (deps.onAction && (('forwardedNow' in outcome && outcome.forwardedNow) || ('changed' in outcome && outcome.changed) || ('forwardedNow' in outcome && outcome.state === 'release_failed'))) {
      deps.onAction({ action, id, actor, outcome: outcome.state, upstreamStatus: 'upstreamStatus' in outcome ? outcome.upstreamStatus : undefined, record: await audit.get(id).catch(() => null) });
    }
    return outcome;
  };
  const html = (res: Response, status: number, body: string) => {
    securityHeaders(res);
    res.status(status).type('html').send(body);
  };
  const sendPng = async (req: Request, res: Response) => {
    const png = await thumbnail(String(req.params.id));
    if (!png) throw new WardenError('AUDIT_RECORD_NOT_FOUND', 'No image is kept for this instance.');
    res.set({ 'Cache-Control': 'private, max-age=300', 'X-Content-Type-Options': 'nosniff' }).type('png').send(png);
  };

  // ---- HTML
  router.get('/', async (req, res) => {
    const filters = filtersOf(req);
    const page = await audit.query(auditQueryOf(filters, pageSize, req.query.offset));
    html(res, 200, listPage(base(req), page, filters));
  });
  router.get('/instances/:id', async (req, res) => {
    const r = await mustGet(String(req.params.id));
    const done = str(req.query.done);
    const notice = done === 'released' ? { text: 'Released: the original bytes were forwarded.' }
      : done === 'release_failed' ? { text: 'The release failed; it can be tried again.', error: true }
        : done === 'discarded' ? { text: 'Discarded: the bytes are deleted after the grace period.' } : undefined;
    html(res, 200, detailPage(base(req), r, await plotsOf(r), hasBytes(r), notice));
  });
  router.get('/instances/:id/thumbnail.png', sendPng);
  for (const action of ['release', 'discard'] as const) {
    router.get(`/instances/:id/${action}`, async (req, res) => {
      const r = await mustGet(String(req.params.id));
      if (!canRelease(r)) throw new WardenError('QUARANTINE_CONFLICT', `This instance cannot be ${action}d in its state (${r.quarantine?.state ?? 'not quarantined'}).`);
      html(res, 200, confirmPage(base(req), r, action));
    });
    router.post(`/instances/:id/${action}`, forms, async (req, res) => {
      requireSameOrigin(req);
      const r = await mustGet(String(req.params.id));
      const body = (req.body ?? {}) as Record<string, unknown>;
      const comment = typeof body.comment === 'string' ? body.comment : '';
      if (body.confirm !== 'yes' || comment.trim() === '') {
        html(res, 400, confirmPage(base(req), r, action, 'A comment is required, and the action must be confirmed.', comment));
        return;
      }
      const outcome = await act(req, action, comment);
      res.redirect(303, `${base(req)}/instances/${encodeURIComponent(r.id)}?done=${outcome.state}`);
    });
  }

  // ---- JSON API
  router.get('/api/instances', async (req, res) => {
    res.json(await audit.query(auditQueryOf(filtersOf(req), Math.min(1000, Number(req.query.limit) || pageSize), req.query.offset)));
  });
  router.get('/api/instances/:id', async (req, res) => {
    const r = await mustGet(String(req.params.id));
    res.json({ ...r, thumbnail: hasBytes(r) ? `${base(req)}/api/instances/${r.id}/thumbnail.png` : null, actionsAllowed: canRelease(r) ? ['release', 'discard'] : [] });
  });
  router.get('/api/instances/:id/thumbnail.png', sendPng);
  router.get('/api/detectors/:name/calibration', async (req, res) => {
    const scores = (await deps.calibration?.(String(req.params.name))) ?? null;
    if (!scores) throw new WardenError('AUDIT_RECORD_NOT_FOUND', 'No calibration scores for this detector.');
    res.json({ detector: req.params.name, n: scores.length, scores: Array.from(scores) });
  });
  router.get('/api/quarantine/usage', async (_req, res) => {
    res.json(await quarantine.usage());
  });
  for (const action of ['release', 'discard'] as const) {
    router.post(`/api/instances/:id/${action}`, json, async (req, res) => {
      requireSameOrigin(req);
      const body = (req.body ?? {}) as Record<string, unknown>;
      res.json(await act(req, action, body.comment));
    });
  }

  // ---- errors: typed ones become 4xx with their sentence; the rest 500 without details.
  router.use((err: unknown, req: Request, res: Response, next: NextFunction) => {
    if (res.headersSent) {
      next(err);
      return;
    }
    const status = statusOf(err);
    if (status >= 500) deps.onError?.(err);
    const message = status >= 500 ? 'The review service failed; the error was logged.' : (err as Error).message;
    if (req.path.startsWith('/api/')) {
      res.status(status).json({ error: { code: isWardenError(err) && status < 500 ? err.code : 'INTERNAL', message } });
    } else {
      html(res, status, errorPage(base(req), status, message));
    }
  });
  return router;
}
