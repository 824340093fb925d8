import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { startReviewApp, type ReviewApp } from '../helpers/review-app';

/**
 * The review page in a real headless Chromium (Debian's, driven by playwright-core): load, filter, release
 * one instance with a comment (the fake upstream receives the original bytes once), discard another.
 * Screenshots go to test-artifacts/review/ (git-ignored).
 */
const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';
const ARTIFACTS = path.resolve(__dirname, '..', '..', 'test-artifacts', 'review');

let app: ReviewApp;
let ctx: BrowserContext;
let page: Page;
let profile: string;

beforeAll(async () => {
  app = await startReviewApp();
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  profile = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-chromium-'));
  ctx = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  page = ctx.pages()[0] ?? await ctx.newPage();
});

afterAll(async () => {
  await ctx?.close();
  await app?.close();
  if (profile) fs.rmSync(profile, { recursive: true, force: true });
});

const shot = (name: string) => page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });

describe('review page in Chromium', () => {
  it('lists every instance newest first and filters by verdict and signal', async () => {
    await page.goto(`${app.url}/ui/`);
    await expect(page.locator('#instances tbody tr').count()).resolves.toBe(8);
    expect(await page.textContent('#count')).toBe('1–8 of 8');
    const verdicts = await page.locator('#instances tbody tr').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-verdict')));
    expect(verdicts).toEqual(['block', 'block', 'block', 'flag', 'forward', 'forward', 'forward', 'forward']);
    await shot('01-list');

    await page.selectOption('#f-verdict', 'block');
    await Promise.all([page.waitForURL(/verdict=block/), page.click('#apply-filters')]);
    expect(await page.locator('#instances tbody tr').count()).toBe(3);
    await page.selectOption('#f-verdict', '');
    await page.selectOption('#f-signal', 'domain');
    await Promise.all([page.waitForURL(/signal=domain/), page.click('#apply-filters')]);
    expect(await page.locator('#instances tbody tr').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-verdict')))).toEqual(['flag']);
    await shot('02-filtered');

    await page.goto(`${app.url}/ui/`);
    await page.fill('#f-from', '2026-11-20T09:02');
    await page.fill('#f-to', '2026-11-20T09:05');
    await Promise.all([page.waitForURL(/from=/), page.click('#apply-filters')]);
    expect(await page.locator('#instances tbody tr td:first-child').allTextContents()).toEqual(['2026-11-20T09:04:00Z', '2026-11-20T09:03:00Z', '2026-11-20T09:02:00Z']);
  });

  it('shows an instance: thumbnail, prediction, reasons and each detector against its calibration', async () => {
    const target = app.blocked[2];
    await page.goto(`${app.url}/ui/?verdict=block`);
    await Promise.all([page.waitForURL(/\/instances\//), page.click(`tr[data-id="${target.id}"] a:text("review")`)]);
    const size = await page.locator('#thumbnail').evaluate(async (el) => {
      const img = el as unknown as { complete: boolean; naturalWidth: number; naturalHeight: number; addEventListener(t: string, f: (v?: unknown) => void, o: object): void };
      if (!img.complete) await new Promise<void>((r) => img.addEventListener('load', () => r(), { once: true }));
      return [img.naturalWidth, img.naturalHeight];
    });
    expect(size).toEqual([224, 224]); // the fixtures are 224², under the 256 px bound
    expect(await page.textContent('#prediction')).toContain('PNEUMONIA');
    expect(await page.locator('#reasons tbody tr').count()).toBe(1);
    expect(await page.textContent('#reasons')).toContain('ADVERSARIAL_PVALUE');
    expect(await page.locator('#detectors svg.plot').count()).toBe(2); // uad and kd have calibrations, nrd none
    expect(await page.locator('#detectors tr[data-detector="uad"] svg title').textContent()).toContain('against 400 clean calibration scores');
    await shot('03-instance');
    // The README's picture (docs/review-page.png is a copy of this): the upper part of the page only.
    await page.screenshot({ path: path.join(ARTIFACTS, 'review-page.png'), clip: { x: 0, y: 0, width: 1180, height: 690 } });
  });

  it('releases an instance after a confirmation with a required comment; the upstream gets the original bytes once', async () => {
    const target = app.blocked[2];
    await page.goto(`${app.url}/ui/instances/${target.id}`);
    await Promise.all([page.waitForURL(/\/release$/), page.click('#release')]);
    await shot('04-confirm-release');
    // An empty comment does not submit (the browser's required check; the server refuses it too).
    await page.click('#confirm');
    expect(page.url()).toMatch(/\/release$/);
    expect(app.forwarded).toHaveLength(0);
    await page.fill('#comment', 'False positive: reviewed the image, normal exposure.');
    await Promise.all([page.waitForURL(/done=released/), page.click('#confirm')]);
    expect(await page.textContent('#state')).toContain('released');
    expect(await page.textContent('#history')).toContain('False positive: reviewed the image');
    expect(app.forwarded).toEqual([{ id: target.id, sha256: target.inst.sha256 }]);
    await shot('05-released');

    // Releasing again through the JSON API answers the recorded outcome and forwards nothing.
    const res = await fetch(`${app.url}/ui/api/instances/${target.id}/release`, {
      method: 'POST', headers: { origin: app.url, 'content-type': 'application/json' }, body: JSON.stringify({ comment: 'again' }),
    });
    const again = { status: res.status, body: await res.json() };
    expect(again).toMatchObject({ status: 200, body: { state: 'released', forwardedNow: false, upstreamStatus: 200 } });
    expect(app.forwarded).toHaveLength(1);
    const rec = await app.store.get(target.id);
    expect(rec!.actions!.map((a) => [a.action, a.actor, a.outcome])).toEqual([['release', 'reviewer-1', 'released']]);
  });

  it('discards another instance with a reason; it leaves the releasable list', async () => {
    const target = app.blocked[1];
    await page.goto(`${app.url}/ui/instances/${target.id}`);
    await Promise.all([page.waitForURL(/\/discard$/), page.click('#discard')]);
    await page.fill('#comment', 'Confirmed manipulation (PGD pattern); reported to security.');
    await Promise.all([page.waitForURL(/done=discarded/), page.click('#confirm')]);
    expect(await page.textContent('#state')).toContain('discarded');
    expect(await page.locator('#release').count()).toBe(0);
    await page.goto(`${app.url}/ui/?status=quarantined`);
    expect(await page.locator('#instances tbody tr').count()).toBe(1);
    await shot('06-after-discard');
    const rec = await app.store.get(target.id);
    expect(rec!.quarantine!.state).toBe('discarded');
    expect(rec!.actions!.map((a) => a.comment)).toEqual(['Confirmed manipulation (PGD pattern); reported to security.']);
    expect(app.forwarded).toHaveLength(1);
  });

  it('refuses an action posted from another origin', async () => {
    const target = app.blocked[0];
    const res = await fetch(`${app.url}/ui/instances/${target.id}/release`, {
      method: 'POST',
      headers: { origin: 'http://evil.example', 'content-type': 'application/x-www-form-urlencoded' },
      body: 'confirm=yes&comment=pwned',
    });
    expect(res.status).toBe(403);
    const formWithoutOrigin = await fetch(`${app.url}/ui/api/instances/${target.id}/discard`, {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'comment=pwned',
    });
    expect(formWithoutOrigin.status).toBe(403);
    expect((await app.store.get(target.id))!.quarantine!.state).toBe('quarantined');
    expect(app.forwarded).toHaveLength(1);
  });
});
