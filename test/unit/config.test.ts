import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parse } from 'yaml';
import { loadConfig, validateConfig, ENV_OVERRIDES } from '../../src/config';

const EXAMPLE = path.join(__dirname, '..', '..', 'config', 'warden.example.yaml');
const tmp = (text: string): string => {
  const f = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'warden-cfg-')), 'w.yaml');
  fs.writeFileSync(f, text);
  return f;
};
const messageOf = (fn: () => unknown): string => {
  try { fn(); } catch (err) { return (err as Error).message; }
  throw new Error('expected a CONFIG_INVALID error');
};

describe('configuration', () => {
  it('the example file is valid and documents every key with a comment', () => {
    const cfg = loadConfig(EXAMPLE, {});
    expect(cfg.server.basePath).toBe('/dicom-web');
    const text = fs.readFileSync(EXAMPLE, 'utf8');
    const lines = text.split('\n');
    lines.forEach((line, i) => {
      const m = /^(\s*)([A-Za-z][A-Za-z0-9]*):/.exec(line);
      if (!m) return;
      const prev = lines[i - 1] ?? '';
      expect({ key: m[2], commented: /#/.test(line) || /^\s*#/.test(prev) }).toEqual({ key: m[2], commented: true });
    });
    expect(Object.keys(parse(text))).toEqual(expect.arrayContaining(['server', 'upstream', 'model', 'policy', 'limits', 'auth', 'stow', 'wado', 'logging']));
  });

  it('the example file shows every key the configuration has', () => {
    const keysOf = (o: unknown, prefix = ''): string[] => (o && typeof o === 'object' && !Array.isArray(o)
      ? Object.entries(o as Record<string, unknown>).flatMap(([k, v]) => [`${prefix}${k}`, ...keysOf(v, `${prefix}${k}.`)])
      : []);
    const example = new Set(keysOf(parse(fs.readFileSync(EXAMPLE, 'utf8'))));
    const all = keysOf(validateConfig({ upstream: { url: 'http://127.0.0.1:8042/dicom-web' } }));
    expect(all.filter((k) => !example.has(k))).toEqual([]);
  });

  it('defaults everything but the upstream URL', () => {
    const cfg = validateConfig({ upstream: { url: 'http://127.0.0.1:8042/dicom-web' } });
    expect(cfg.server.port).toBe(8080);
    expect(cfg.policy.onError).toEqual({ decode: 'block', model: 'block', timeout: 'block' });
    expect(cfg.model.path).toBeNull();
    expect(messageOf(() => validateConfig({}))).toMatch(/upstream: required/);
  });

  it('names the bad key and says what was expected', () => {
    expect(messageOf(() => validateConfig({ upstream: { url: 'ftp://x' } }))).toMatch(/upstream\.url: expected an http\(s\) URL/);
    expect(messageOf(() => validateConfig({ upstream: { url: 'http://x' }, server: { prot: 1 } }))).toMatch(/server\.prot: unknown key/);
    expect(messageOf(() => validateConfig({ upstream: { url: 'http://x' }, policy: { adversarial: { flagFpr: 2 } } }))).toMatch(/policy\.adversarial\.flagFpr/);
    expect(messageOf(() => validateConfig({ upstream: { url: 'http://x' }, policy: { decideBy: ['uad'] } }))).toMatch(/policy\.decideBy: moved to policy\.adversarial\.decideBy/);
    expect(messageOf(() => validateConfig({ upstream: { url: 'http://x' }, policy: { onError: { decode: 'drop' } } }))).toMatch(/policy\.onError\.decode.*"forward"\|"flag"\|"block"|policy\.onError\.decode/);
    expect(messageOf(() => validateConfig({ upstream: { url: 'http://x' }, server: { basePath: 'dicom-web/' } }))).toMatch(/server\.basePath: expected a path/);
    expect(messageOf(() => validateConfig({ upstream: { url: 'http://x' }, policy: { adversarial: { flagFpr: 0.01, blockFpr: 0.05 } } }))).toMatch(/policy\.adversarial\.blockFpr: must not exceed/);
  });

  it('applies WARDEN_* overrides over the file and rejects bad ones by name', () => {
    const f = tmp('upstream:\n  url: http://a:1/dicom-web\nserver:\n  port: 1234\n');
    const cfg = loadConfig(undefined, { WARDEN_CONFIG: f, WARDEN_PORT: '9999', WARDEN_UPSTREAM_URL: 'http://b:2/dw', WARDEN_STUDY_RULE: 'study' });
    expect(cfg.server.port).toBe(9999);
    expect(cfg.upstream.url).toBe('http://b:2/dw');
    expect(cfg.policy.studyRule).toBe('study');
    expect(loadConfig(f, { WARDEN_WADO_SCAN: 'true' }).wado.scan).toBe(true);
    expect(messageOf(() => loadConfig(f, { WARDEN_WADO_SCAN: 'yes' }))).toMatch(/WARDEN_WADO_SCAN \(→ wado\.scan\): expected true or false/);
    expect(messageOf(() => validateConfig({ upstream: { url: 'http://x' }, wado: { partialStatus: 207 } }))).toMatch(/wado\.partialStatus: expected 206 or 200/);
    expect(messageOf(() => loadConfig(f, { WARDEN_PORT: 'eighty' }))).toMatch(/WARDEN_PORT \(→ server\.port\): expected an integer/);
    expect(Object.keys(ENV_OVERRIDES)).toEqual(expect.arrayContaining(['WARDEN_UPSTREAM_URL', 'WARDEN_PORT']));
  });

  it('reports unreadable and non-YAML files', () => {
    expect(messageOf(() => loadConfig('/nonexistent/warden.yaml', {}))).toMatch(/cannot read/);
    expect(messageOf(() => loadConfig(tmp('a: [1, 2'), {}))).toMatch(/not valid YAML/);
    expect(messageOf(() => loadConfig(tmp('- 1\n- 2\n'), {}))).toMatch(/expected a mapping/);
  });
});
