import type { Request } from 'express';
import { PNG } from 'pngjs';
import { DEFAULT_BUNDLE_PATH, DEFAULT_MODEL_PATH } from '../../src/core/defaults';
import { loadBundle } from '../../src/detectors';
import { loadModelManifest } from '../../src/models';
import { bundleCalibration, calibrationPlotSvg, isSameOrigin, renderThumbnail, thumbnailSize } from '../../src/review';
import { escapeHtml, html } from '../../src/review/html';
import { labInstances } from '../helpers/trail-fixtures';

describe('review rendering', () => {
  it('sizes thumbnails to at most 256 px on the long side, keeping the aspect ratio, never upscaling', () => {
    expect(thumbnailSize(2048, 1024)).toEqual({ height: 256, width: 128 });
    expect(thumbnailSize(1000, 3000)).toEqual({ height: 85, width: 256 });
    expect(thumbnailSize(224, 224)).toEqual({ height: 224, width: 224 });
  });

  it('renders a lab fixture to a grey PNG whose pixels span the window', async () => {
    const [inst] = labInstances('clean', 1);
    const png = PNG.sync.read(await renderThumbnail(inst.bytes, 100));
    expect([png.width, png.height]).toEqual([100, 100]);
    let min = 255;
    let max = 0;
    for (let i = 0; i < png.data.length; i += 4) {
      expect(png.data[i]).toBe(png.data[i + 1]);
      min = Math.min(min, png.data[i]);
      max = Math.max(max, png.data[i]);
    }
    expect(min).toBeLessThan(20);
    expect(max).toBeGreaterThan(235);
  });

  it('plots a far-out score pinned to the edge with its value, and a near one on the axis', () => {
    const cal = Array.from({ length: 100 }, (_, i) => i / 10);
    const far = calibrationPlotSvg({ detector: 'uad', calibration: cal, score: 1000, pValue: 0.0099, alarming: true });
    expect(far).toContain('1000 ▶');
    expect(far).toContain('#c0392b');
    expect(far).toContain('against 100 clean calibration scores, p = 0.010');
    expect((far.match(/<rect/g) ?? []).length).toBe(30);
    const near = calibrationPlotSvg({ detector: 'kd<x>', calibration: cal, score: 5, pValue: 0.5 });
    expect(near).not.toContain('▶');
    expect(near).toContain('kd&lt;x&gt;');
    expect(calibrationPlotSvg({ detector: 'lid', calibration: [], score: 1, pValue: 1 })).toContain('no calibration scores');
  });

  it('reads each detector\'s sorted clean calibration scores from the embedded bundle', async () => {
    const model = await loadModelManifest(DEFAULT_MODEL_PATH);
    const bundle = await loadBundle(DEFAULT_BUNDLE_PATH, model.sha256);
    const calibration = bundleCalibration(bundle);
    expect(bundle.names.length).toBeGreaterThan(0);
    for (const name of bundle.names) {
      const scores = calibration(name)!;
      expect(scores.length).toBeGreaterThan(10);
      for (let i = 1; i < scores.length; i++) expect(scores[i]).toBeGreaterThanOrEqual(scores[i - 1]);
      // p-value of the largest clean score, recomputed from these scores, matches the detector's own
      const top = scores[scores.length - 1];
      const d = bundle.detectors![name];
      if (!(d.params as { calibrateBy?: string }).calibrateBy || (d.params as { calibrateBy?: string }).calibrateBy === 'marginal') {
        expect(d.pValue(top)).toBeCloseTo(2 / (scores.length + 1), 12);
      }
    }
    expect(calibration('no-such-detector')).toBeNull();
  });

  it('escapes interpolated values unless they are markup it made', () => {
    expect(escapeHtml(`<a href="x">'&`)).toBe('&lt;a href=&quot;x&quot;&gt;&#39;&amp;');
    expect(html`<p>${'<script>'}${html`<b>${'&'}</b>`}${['<', html`<i></i>`]}</p>`.value).toBe('<p>&lt;script&gt;<b>&amp;</b>&lt;<i></i></p>');
  });

  it('accepts actions from its own origin and refuses other origins, null origins and cross-site forms', () => {
    const req = (headers: Record<string, string>, json = false) => ({
      get: (h: string) => headers[h.toLowerCase()],
      is: (t: string) => (json && t === 'application/json' ? 'application/json' : false),
    }) as unknown as Request;
    const host = { host: '127.0.0.1:8080' };
    expect(isSameOrigin(req({ ...host, origin: 'http://127.0.0.1:8080' }))).toBe(true);
    expect(isSameOrigin(req({ ...host, origin: 'http://evil.example' }))).toBe(false);
    expect(isSameOrigin(req({ ...host, origin: 'null' }))).toBe(false);
    expect(isSameOrigin(req({ ...host, origin: 'https://warden.example' }), ['https://warden.example'])).toBe(true);
    expect(isSameOrigin(req({ ...host, 'sec-fetch-site': 'cross-site' }))).toBe(false);
    expect(isSameOrigin(req({ ...host, 'sec-fetch-site': 'same-origin' }))).toBe(true);
    expect(isSameOrigin(req({ ...host }))).toBe(false);
    expect(isSameOrigin(req({ ...host }, true))).toBe(true);
  });
});
