import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { WardenError } from '../../src/core/errors';
import { readAdaptiveReport, renderAdaptiveMarkdown } from '../../src/eval';

// The lab's adaptive-attack report (lab/adaptive/report.py), committed as written by the run behind docs/adaptive.md.
const ROOT = path.resolve(__dirname, '..', '..');
const FIXTURE = path.join(__dirname, '..', 'fixtures', 'adaptive', 'report.json');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-adaptive-report-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function write(name: string, body: string): string {
  const f = path.join(dir, name);
  fs.writeFileSync(f, body);
  return f;
}

function usageError(fn: () => unknown): WardenError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(WardenError);
    expect((e as WardenError).code).toBe('USAGE');
    return e as WardenError;
  }
  throw new Error('expected a USAGE error');
}

describe('warden eval --adaptive: the lab adaptive-attack section', () => {
  const raw = JSON.parse(fs.readFileSync(FIXTURE, 'utf8'));

  it('renders one table line per attack × ε, with the lab\'s counts and Warden\'s own counts where it scored the DICOM', () => {
    const rep = readAdaptiveReport(FIXTURE);
    const md = renderAdaptiveMarkdown(rep).join('\n');
    const lines = md.split('\n').filter((l) => /^\| [a-z]+ \| [0-9.]+\/255 \|/.test(l));
    expect(lines).toHaveLength(raw.rows.length);
    for (const r of raw.rows) {
      const line = lines.find((l) => l.startsWith(`| ${r.kind} | ${r.eps}/255 |`))!;
      expect(line).toContain(`| ${r.steps} × ${r.restarts} | ${r.flipped} / ${r.n} |`);
      expect(line).toContain(r.warden ? `${r.warden.flipped} / ${r.warden.caught5} / ${r.warden.caught05}` : '(twins only)');
    }
    expect(md).toContain('L2 for 90 % success');
  });

  it('refuses a file that is not such a report, naming what is wrong', () => {
    expect(usageError(() => readAdaptiveReport(write('broken.json', '{"rows": ['))).message).toContain('not a readable JSON file');
    expect(usageError(() => readAdaptiveReport(write('other.json', '{"rows": []}'))).message).toContain('baseline or l2_for_90 missing');
    const inflated = { ...raw, rows: [{ ...raw.rows[0], caught5: raw.rows[0].flipped + 1 }] };
    expect(usageError(() => readAdaptiveReport(write('inflated.json', JSON.stringify(inflated)))).message).toContain('counts more caught');
    const badHit = { ...raw, l2_for_90: { ...raw.l2_for_90, warden_5: 1.7 } };
    expect(usageError(() => readAdaptiveReport(write('badhit.json', JSON.stringify(badHit)))).message).toContain('l2_for_90.warden_5');
    const noEps = { ...raw, rows: [{ ...raw.rows[0], eps: 'two' }] };
    expect(usageError(() => readAdaptiveReport(write('noeps.json', JSON.stringify(noEps)))).message).toContain('no number eps');
  });

  it('fails the eval command at once, before any extraction, on a bad report', () => {
    const res = spawnSync(process.execPath, [path.join(ROOT, 'bin', 'warden.js'), 'eval', '--bundle', 'missing.bundle', '--manifest', 'missing.csv',
      '--out', path.join(dir, 'out'), '--adaptive', write('bad.json', '[]')], { cwd: ROOT, encoding: 'utf8', timeout: 60000 });
    expect(res.status).toBe(2);
    expect(res.stderr).toContain('--adaptive');
    expect(fs.existsSync(path.join(dir, 'out'))).toBe(false);
  });
});
