import { mutateDicom } from './dicom-mutate';
import type { RawRequest } from './http-client';
import { Rng } from './rng';
import type { SeedFile } from './seeds';
import type { StowBehaviour } from './upstream';
import { FUZZ_TOKEN } from './gateway-protocol';

/**
 * The gateway target's cases. Case `index` of a run seeded `seed` is, by weight: a STOW-RS request (multipart body
 * built part by part from seed files, some mutated as in the parser target, then perhaps broken in its framing:
 * boundary, part headers, preamble and epilogue, delimiters, truncation, chunked or Content-Length framing that may
 * lie or conflict, a client that dribbles, stalls or goes away mid-body), a WADO-RS/QIDO-RS request on a mutated
 * path (retrieves are scanned), a burst of concurrent STOW-RS requests some of which abort, or an odd request
 * (methods, paths, malformed HTTP). The upstream's behaviour for the case is drawn too (normal, partial success, an
 * error status, a body that is not JSON, a hang-up, a stall).
 */

export interface PlannedRequest {
  raw: Omit<RawRequest, 'port'>;
  route: 'stow' | 'wado' | 'misc';
  authorized: boolean;
  /** Parts as the client meant them; when `framingIntact`, Warden must see exactly these. */
  sentParts: Buffer[];
  framingIntact: boolean;
  /** The client goes away before the end of its request. */
  clientAborts: boolean;
  /** Content-Length and Transfer-Encoding conflict, or the framing is otherwise unreadable: no forward may happen. */
  unreadableFraming: boolean;
}

export interface GatewayCase {
  index: number;
  kind: 'stow' | 'wado' | 'burst' | 'misc';
  what: string[];
  requests: PlannedRequest[];
  upstream: { behaviour: StowBehaviour; wadoInstances: Buffer[]; wadoBody: { contentType: string; body: Buffer } | null };
}

const CRLF = '\r\n';

interface Part { headers: string[]; content: Buffer }
interface Body {
  boundary: string;
  preamble: string;
  epilogue: string;
  parts: Part[];
  /** Between the boundary and the line end (RFC 2046 transport padding). */
  padding: string;
  eol: string;
  closing: boolean;
}

function serialize(b: Body): Buffer {
  const out: Buffer[] = [];
  if (b.preamble) out.push(Buffer.from(b.preamble + b.eol, 'latin1'));
  b.parts.forEach((p, i) => {
    out.push(Buffer.from(`${i === 0 ? '' : b.eol}--${b.boundary}${b.padding}${b.eol}${p.headers.map((h) => h + b.eol).join('')}${b.eol}`, 'latin1'), p.content);
  });
  if (b.closing) out.push(Buffer.from(`${b.parts.length ? b.eol : ''}--${b.boundary}--${b.padding}${b.eol}`, 'latin1'));
  if (b.epilogue) out.push(Buffer.from(b.epilogue, 'latin1'));
  return Buffer.concat(out);
}

function chunked(rng: Rng, body: Buffer, broken: boolean): Buffer {
  const out: Buffer[] = [];
  for (let off = 0; off < body.length;) {
    const n = Math.min(body.length - off, rng.pick([1, 7, 100, 4096, 65536, rng.int(1, 20000)]));
    const ext = rng.chance(0.05) ? ';ext=1' : '';
    out.push(Buffer.from(`${n.toString(16)}${ext}${CRLF}`, 'latin1'), body.subarray(off, off + n), Buffer.from(CRLF));
    off += n;
  }
  if (broken) {
    const at = rng.below(out.length + 1);
    out.splice(at, 0, Buffer.from(rng.pick(['zz\r\n', '-1\r\n', 'FFFFFFFFFFFFFFFFFF\r\n', '5\r\nab\r\n', '\r\n'])));
  }
  out.push(Buffer.from(`0${CRLF}${CRLF}`));
  return Buffer.concat(out);
}

const STOW_PATHS = ['/dicom-web/studies', '/dicom-web/studies', '/dicom-web/studies', '/dicom-web/studies/', '//dicom-web//studies', '/dicom-web/./studies',
  '/dicom-web/studies/../studies', '/dicom-web/studies%2f', '/DICOM-WEB/studies', '/dicom-web/studies?x=1', '/dicom-web/series', '/dicom-web/%2e%2e/system'];

const WADO_PATHS = (study: string): string[] => [
  `/dicom-web/studies/${study}`, `/dicom-web//studies/${study}`, `//dicom-web/studies//${study}/`, `/dicom-web/./studies/${study}`, `/dicom-web/studies/${study}/.`,
  `/dicom-web/studies/x/../${study}`, `/dicom-web/studies/%2e/${study}`, `/dicom-web/studies%2f${study}`, `/dicom-web/studies/${study}/series/1.2/instances/1.2.3`,
  `/dicom-web/studies/${study}/metadata`, `/dicom-web/studies/${study}/series/1/instances/2/frames/1`, `/dicom-web/studies/${study}/rendered`,
  '/dicom-web/studies', '/dicom-web/studies?PatientID=x&limit=5', '/dicom-web/series', '/dicom-web/instances?x=%00', '/dicom-web/../system',
  '/dicom-web/..%2fsystem', '/dicom-web/patients', '/dicom-web/tools/find', '/dicom-web/studies\\..\\system', `/dicom-web/studies/${study}%00`,
  `/dicom-web/studies/${encodeURIComponent(study)}?includefield=all`, `/dicom-web/studies/${study};a=b`, '/dicom-web/studies/%zz', `/dicom-web/studies/${'1.'.repeat(3000)}`,
];

function headLines(method: string, path: string, headers: [string, string][]): Buffer {
  return Buffer.from(`${method} ${path} HTTP/1.1${CRLF}${headers.map(([k, v]) => `${k}: ${v}${CRLF}`).join('')}${CRLF}`, 'latin1');
}

function authHeader(rng: Rng, what: string[]): { header: [string, string][]; authorized: boolean } {
  if (rng.chance(0.93)) return { header: [['Authorization', `Bearer ${FUZZ_TOKEN}`]], authorized: true };
  const [label, header, authorized] = rng.pick([
    ['none', [], false], ['wrong', [['Authorization', 'Bearer wrong-token-0000000000']], false], ['basic', [['Authorization', `Basic ${FUZZ_TOKEN}`]], false],
    ['longer', [['Authorization', `Bearer ${FUZZ_TOKEN}x`]], false], ['two-tokens', [['Authorization', `Bearer ${FUZZ_TOKEN} ${FUZZ_TOKEN}`]], false],
    ['lower-case-scheme', [['Authorization', `bearer  ${FUZZ_TOKEN} `]], true],
  ] as [string, [string, string][], boolean][]);
  what.push(`auth:${label}`);
  return { header, authorized };
}

function dicomPart(rng: Rng, seeds: SeedFile[], what: string[]): Buffer {
  const seed = rng.pick(seeds);
  const r = rng.next();
  if (r < 0.45) { what.push(`part:${seed.name}`); return Buffer.from(seed.bytes); }
  if (r < 0.9) {
    const m = mutateDicom(rng, seed.bytes, () => rng.pick(seeds).bytes);
    what.push(`part:${seed.name}[${m.ops.join(' ')}]`);
    return m.bytes;
  }
  if (r < 0.95) { what.push('part:garbage'); return rng.bytes(rng.int(0, 3000)); }
  what.push('part:empty');
  return Buffer.alloc(0);
}

function stowRequest(rng: Rng, seeds: SeedFile[], what: string[], opts: { simple?: boolean } = {}): PlannedRequest {
  const nParts = opts.simple ? 1 : rng.weighted([[6, 1], [3, 2], [1, 3], [0.5, 6], [0.1, 40]] as const);
  const sentParts = Array.from({ length: nParts }, () => (opts.simple ? Buffer.from(rng.pick(seeds).bytes) : dicomPart(rng, seeds, what)));
  const body: Body = {
    boundary: `fuzz-${rng.int(0, 1e9).toString(36)}`,
    preamble: '', epilogue: '', padding: '', eol: CRLF, closing: true,
    parts: sentParts.map((content) => ({ headers: ['Content-Type: application/dicom'], content })),
  };
  let intact = true;
  let unreadable = false;
  let contentType = `multipart/related; type="application/dicom"; boundary=${body.boundary}`;
  // harmless variations: the same parts must come through
  if (!opts.simple && rng.chance(0.3)) {
    const v = rng.pick(['preamble', 'epilogue', 'padding', 'quotedBoundary', 'headerCase', 'extraHeader', 'partParams', 'noPartType', 'paramOrder']);
    what.push(`harmless:${v}`);
    if (v === 'preamble') body.preamble = rng.pick(['This is a preamble.', '', ' ', 'x'.repeat(5000), '--not-the-boundary']);
    if (v === 'epilogue') body.epilogue = rng.pick(['\r\nepilogue', '\r\n\r\n', 'x'.repeat(3000)]);
    if (v === 'padding') body.padding = rng.pick([' ', '\t', '   \t']);
    if (v === 'quotedBoundary') contentType = `multipart/related; type="application/dicom"; boundary="${body.boundary}"`;
    if (v === 'headerCase') body.parts.forEach((p) => { p.headers = ['content-type: APPLICATION/DICOM']; });
    if (v === 'extraHeader') body.parts.forEach((p) => p.headers.push('Content-Location: /x/y', 'X-Anything: 1'));
    if (v === 'partParams') body.parts.forEach((p) => { p.headers = ['Content-Type: application/dicom; transfer-syntax=1.2.840.10008.1.2.1']; });
    if (v === 'noPartType') body.parts.forEach((p) => { p.headers = []; });
    if (v === 'paramOrder') contentType = `multipart/related; boundary=${body.boundary}; type=application/dicom; start="<x>"`;
  }
  // framing that breaks the body
  if (!opts.simple && rng.chance(0.3)) {
    const v = rng.pick(['lfOnly', 'noClosing', 'wrongBoundary', 'noBlankLine', 'headerNoColon', 'foldedHeader', 'hugeHeader', 'manyHeaders', 'nulHeader',
      'boundaryInContent', 'noFirstDelimiter', 'emptyPart', 'truncate', 'garbageInside', 'noBoundaryParam', 'longBoundary', 'badBoundaryChars',
      'typeJson', 'formData', 'partTypeOther', 'noContentType']);
    what.push(`framing:${v}`);
    intact = false;
    switch (v) {
      case 'lfOnly': body.eol = '\n'; break;
      case 'noClosing': body.closing = false; break;
      case 'wrongBoundary': contentType = `multipart/related; type="application/dicom"; boundary=${body.boundary}x`; break;
      case 'noBlankLine': if (body.parts[0]) body.parts[0].headers = ['Content-Type: application/dicom\r\nX: y']; break;
      case 'headerNoColon': if (body.parts[0]) body.parts[0].headers.push('This is not a header'); break;
      case 'foldedHeader': if (body.parts[0]) body.parts[0].headers = ['Content-Type: application/', ' dicom']; break;
      case 'hugeHeader': if (body.parts[0]) body.parts[0].headers.push(`X-Big: ${'a'.repeat(rng.pick([17000, 70000]))}`); break;
      case 'manyHeaders': if (body.parts[0]) for (let i = 0; i < 150; i++) body.parts[0].headers.push(`X-H${i}: ${i}`); break;
      case 'nulHeader': if (body.parts[0]) body.parts[0].headers = ['Content-Type: application/dicom\0\x7f\xff']; break;
      case 'boundaryInContent': if (body.parts[0]) body.parts[0].content = Buffer.concat([body.parts[0].content, Buffer.from(`\r\n--${body.boundary}\r\n\r\nabc`)]); break;
      case 'noFirstDelimiter': body.preamble = `--${body.boundary}x`; break;
      case 'emptyPart': body.parts.push({ headers: [], content: Buffer.alloc(0) }); break;
      case 'garbageInside': body.epilogue = ''; body.preamble = ''; body.parts.splice(rng.below(body.parts.length + 1), 0, { headers: ['Content-Type: application/dicom'], content: rng.bytes(rng.int(1, 500)) }); break;
      case 'noBoundaryParam': contentType = 'multipart/related; type="application/dicom"'; break;
      case 'longBoundary': contentType = `multipart/related; type="application/dicom"; boundary=${'b'.repeat(rng.pick([71, 200, 8000]))}`; break;
      case 'badBoundaryChars': contentType = 'multipart/related; type="application/dicom"; boundary=a{b}c"d'; break;
      case 'typeJson': contentType = `multipart/related; type="application/dicom+json"; boundary=${body.boundary}`; break;
      case 'formData': contentType = `multipart/form-data; boundary=${body.boundary}`; break;
      case 'partTypeOther': if (body.parts[0]) body.parts[0].headers = [rng.pick(['Content-Type: application/octet-stream', 'Content-Type: text/plain', 'Content-Type: application/dicom+xml'])]; break;
      case 'noContentType': contentType = ''; break;
      default: break;
    }
  }
  let wire = serialize(body);
  if (what.includes('framing:truncate')) wire = wire.subarray(0, rng.below(wire.length));
  // HTTP framing and client behaviour
  const auth = authHeader(rng, what);
  const headers: [string, string][] = [['Host', '127.0.0.1'], ...(contentType ? [['Content-Type', contentType] as [string, string]] : []), ['Accept', 'application/dicom+json'], ...auth.header, ['Connection', 'close']];
  const framing = opts.simple ? 'length' : rng.weighted([[70, 'length'], [22, 'chunked'], [2, 'both'], [2, 'lengthShort'], [2, 'lengthLong'], [1, 'brokenChunks'], [1, 'twoLengths']] as const);
  let wireBody: Buffer;
  switch (framing) {
    case 'chunked': headers.push(['Transfer-Encoding', 'chunked']); wireBody = chunked(rng, wire, false); break;
    case 'brokenChunks': headers.push(['Transfer-Encoding', 'chunked']); wireBody = chunked(rng, wire, true); unreadable = true; intact = false; break;
    case 'both': headers.push(['Content-Length', String(wire.length)], ['Transfer-Encoding', 'chunked']); wireBody = chunked(rng, wire, false); unreadable = true; intact = false; break;
    case 'twoLengths': headers.push(['Content-Length', String(wire.length)], ['Content-Length', String(wire.length + 5)]); wireBody = wire; unreadable = true; intact = false; break;
    case 'lengthShort': {
      // the length lies short: the rest of the body is read as a second request
      const n = rng.below(Math.max(1, wire.length));
      headers.push(['Content-Length', String(n)]);
      wireBody = wire;
      intact = false;
      break;
    }
    case 'lengthLong': headers.push(['Content-Length', String(wire.length + rng.int(1, 100000))]); wireBody = wire; intact = false; break;
    default: headers.push(['Content-Length', String(wire.length)]); wireBody = wire; break;
  }
  if (framing !== 'length') what.push(`http:${framing}`);
  if (!opts.simple && rng.chance(0.03)) { headers.push(['Expect', '100-continue']); what.push('expect-100'); }
  const raw: Omit<RawRequest, 'port'> = { head: Buffer.alloc(0), body: wireBody, deadlineMs: 20000 };
  let clientAborts = false;
  const total = wireBody.length;
  const behaviour = opts.simple ? 'whole' : rng.weighted([[62, 'whole'], [14, 'dribble'], [14, 'abort'], [4, 'stall'], [3, 'abortInHead'], [3, 'halfClose']] as const);
  let path = '/dicom-web/studies';
  if (!opts.simple && rng.chance(0.12)) { path = rng.pick(STOW_PATHS); what.push(`path:${path}`); }
  raw.head = headLines('POST', path, headers);
  switch (behaviour) {
    // at most ~400 pieces, so a dribbling client stays well inside the case deadline
    case 'dribble': raw.pieceBytes = Math.max(rng.pick([1, 13, 512, 8192]), Math.ceil((raw.head.length + total) / 400)); raw.gapMs = rng.pick([0, 0, 1]); break;
    case 'abort': raw.abortAfter = raw.head.length + rng.below(Math.max(1, total)); raw.pieceBytes = rng.pick([0, 4096]); clientAborts = true; break;
    case 'abortInHead': raw.abortAfter = rng.below(raw.head.length); clientAborts = true; break;
    case 'stall': raw.stallAfter = raw.head.length + rng.below(Math.max(1, total)); raw.stallMs = rng.pick([300, 700]); // below and above the gateway's 500 ms body idle limit intact = false; break;
    // Node's HTTP server ends the socket when the client half-closes (httpAllowHalfOpen is false): the answer may be
    // lost, like an aborting client's, though the request is still processed
    case 'halfClose': raw.endAfterWrite = true; clientAborts = true; break;
    default: break;
  }
  if (behaviour !== 'whole') what.push(`client:${behaviour}`);
  if (!['/dicom-web/studies', '/dicom-web/studies/', '//dicom-web//studies', '/dicom-web/studies?x=1'].includes(path)) intact = false;
  return { raw, route: 'stow', authorized: auth.authorized, sentParts, framingIntact: intact && !unreadable, clientAborts, unreadableFraming: unreadable };
}

function wadoRequest(rng: Rng, seeds: SeedFile[], what: string[], upstream: GatewayCase['upstream']): PlannedRequest {
  const n = rng.weighted([[5, 1], [3, 2], [1, 4]] as const);
  for (let i = 0; i < n; i++) upstream.wadoInstances.push(dicomPart(rng, seeds, what));
  if (rng.chance(0.15)) {
    // a broken multipart answer from the upstream
    const boundary = 'up-bnd';
    const parts = upstream.wadoInstances.map((p) => Buffer.concat([Buffer.from(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`), p, Buffer.from('\r\n')]));
    let body = Buffer.concat([...parts, Buffer.from(`--${boundary}--\r\n`)]);
    const v = rng.pick(['truncated', 'noClosing', 'wrongBoundary', 'gzipLabel']);
    if (v === 'truncated') body = body.subarray(0, rng.below(body.length));
    if (v === 'noClosing') body = Buffer.concat(parts);
    const ct = v === 'wrongBoundary' ? 'multipart/related; type="application/dicom"; boundary=other' : `multipart/related; type="application/dicom"; boundary=${boundary}`;
    upstream.wadoBody = { contentType: ct, body };
    what.push(`upstream-wado:${v}`);
  }
  const study = rng.chance(0.5) ? '1.2.3.4' : `1.2.${rng.int(0, 99999)}`;
  const path = rng.pick(WADO_PATHS(study));
  what.push(`GET ${path.slice(0, 80)}`);
  const auth = authHeader(rng, what);
  const accept = rng.pick(['multipart/related; type="application/dicom"', 'multipart/related; type="application/dicom"; transfer-syntax=*', 'application/dicom+json', '*/*']);
  const head = headLines(rng.chance(0.9) ? 'GET' : 'HEAD', path, [['Host', '127.0.0.1'], ['Accept', accept], ...auth.header, ['Connection', 'close']]);
  const raw: Omit<RawRequest, 'port'> = { head, body: Buffer.alloc(0), deadlineMs: 20000 };
  let clientAborts = false;
  if (rng.chance(0.05)) { raw.abortAfter = rng.below(head.length); clientAborts = true; what.push('client:abortInHead'); }
  return { raw, route: 'wado', authorized: auth.authorized, sentParts: [], framingIntact: true, clientAborts, unreadableFraming: false };
}

function miscRequest(rng: Rng, what: string[]): PlannedRequest {
  const auth = [['Authorization', `Bearer ${FUZZ_TOKEN}`]] as [string, string][];
  const v = rng.pick(['method', 'health', 'ready', 'metrics', 'notFound', 'badRequestLine', 'badHeader', 'hugeHeaders', 'http10', 'pipelined', 'absoluteUri', 'noHost', 'spaceInPath']);
  what.push(`misc:${v}`);
  let head: Buffer;
  switch (v) {
    case 'method': head = headLines(rng.pick(['PUT', 'DELETE', 'PATCH', 'OPTIONS', 'TRACE', 'PROPFIND']), rng.pick(['/dicom-web/studies', '/dicom-web/studies/1.2', '/dicom-web/instances']), [['Host', 'x'], ...auth, ['Content-Length', '0'], ['Connection', 'close']]); break;
    case 'health': head = headLines('GET', '/healthz', [['Host', 'x'], ['Connection', 'close']]); break;
    case 'ready': head = headLines('GET', '/readyz', [['Host', 'x'], ['Connection', 'close']]); break;
    case 'metrics': head = headLines('GET', '/metrics', [['Host', 'x'], ['Connection', 'close']]); break;
    case 'notFound': head = headLines('GET', rng.pick(['/', '/system', '/dicom-web', '/dicom-webx/studies', '/app/explorer.html', '/%2e%2e/etc/passwd']), [['Host', 'x'], ['Connection', 'close']]); break;
    case 'badRequestLine': head = Buffer.from(rng.pick(['GARBAGE\r\n\r\n', 'GET /healthz HTTP/9.9\r\n\r\n', 'GET  /healthz  HTTP/1.1\r\n\r\n', '\x00\x01\x02\r\n\r\n', 'GET /\x7f HTTP/1.1\r\nHost: x\r\n\r\n']), 'latin1'); break;
    case 'badHeader': head = Buffer.from(`GET /healthz HTTP/1.1\r\nHost: x\r\n${rng.pick(['NoColon', 'Bad Name: 1', 'X: a\r\n b', 'X:\x00y'])}\r\n\r\n`, 'latin1'); break;
    case 'hugeHeaders': head = headLines('GET', '/healthz', [['Host', 'x'], ['X-Big', 'a'.repeat(rng.pick([20000, 100000]))], ['Connection', 'close']]); break;
    case 'http10': head = Buffer.from('GET /healthz HTTP/1.0\r\n\r\n', 'latin1'); break;
    case 'pipelined': head = Buffer.concat([headLines('GET', '/healthz', [['Host', 'x']]), headLines('GET', '/readyz', [['Host', 'x'], ['Connection', 'close']])]); break;
    case 'absoluteUri': head = headLines('GET', 'http://evil.example/dicom-web/studies', [['Host', 'x'], ...auth, ['Connection', 'close']]); break;
    case 'noHost': head = Buffer.from('GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n', 'latin1'); break;
    default: head = Buffer.from('GET /dicom-web/studies /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 'latin1'); break;
  }
  return { raw: { head, body: Buffer.alloc(0), deadlineMs: 20000, endAfterWrite: v === 'http10' }, route: 'misc', authorized: true, sentParts: [], framingIntact: true, clientAborts: false, unreadableFraming: false };
}

export function gatewayCase(seed: number, index: number, seeds: SeedFile[]): GatewayCase {
  const rng = Rng.forCase(seed, 'gateway', index);
  const what: string[] = [];
  const behaviour = rng.weighted<StowBehaviour>([[82, 'normal'], [5, 'partial'], [2, 'failedList'], [3, 'status500'], [3, 'status503'], [2, 'notJson'], [2, 'hangUp'], [1, 'stall']]);
  if (behaviour !== 'normal') what.push(`upstream:${behaviour}`);
  const upstream: GatewayCase['upstream'] = { behaviour, wadoInstances: [], wadoBody: null };
  const kind = rng.weighted<GatewayCase['kind']>([[70, 'stow'], [16, 'wado'], [4, 'burst'], [10, 'misc']]);
  let requests: PlannedRequest[];
  if (kind === 'stow') requests = [stowRequest(rng, seeds, what)];
  else if (kind === 'wado') requests = [wadoRequest(rng, seeds, what, upstream)];
  else if (kind === 'misc') requests = [miscRequest(rng, what)];
  else {
    const n = rng.int(3, 6);
    what.push(`burst:${n}`);
    requests = Array.from({ length: n }, () => {
      const r = stowRequest(rng, seeds, [], { simple: true });
      if (rng.chance(0.35)) {
        r.raw.abortAfter = r.raw.head.length + rng.below(Math.max(1, r.raw.body.length));
        r.raw.pieceBytes = 2048;
        r.clientAborts = true;
      }
      return r;
    });
    what.push(`aborting:${requests.filter((r) => r.clientAborts).length}`);
  }
  return { index, kind, what, requests, upstream };
}
