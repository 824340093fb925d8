import { DriftWatch, binomialUpperTail, createMetrics } from '../../src/metrics';
import { mulberry32 } from '../../src/detectors';

/** Conformal p-values of a stream whose true flag rate at `nominal` is `rate`: below `nominal` with that probability. */
function stream(n: number, rate: number, nominal: number, seed: number) {
  const rnd = mulberry32(seed);
  return Array.from({ length: n }, () => (rnd() < rate ? rnd() * nominal : nominal + rnd() * (1 - nominal)));
}

describe('drift watch', () => {
  const THRESHOLD = 1e-4; // the alert rule's threshold (deploy/helm/warden alert WardenCalibrationDrift)

  it('computes the binomial upper tail exactly', () => {
    expect(binomialUpperTail(0, 100, 0.05)).toBe(1);
    expect(binomialUpperTail(1, 1, 0.05)).toBeCloseTo(0.05, 12);
    // P(X ≥ 2), X ~ B(3, 0.5) = 4/8
    expect(binomialUpperTail(2, 3, 0.5)).toBeCloseTo(0.5, 12);
    expect(binomialUpperTail(101, 100, 0.05)).toBe(0);
  });

  it('crosses the alert threshold on a stream flagged at 4× the nominal rate, not on one at the nominal rate', () => {
    const nominal = 0.05;
    const drifted = new DriftWatch(1000);
    for (const p of stream(1000, 4 * nominal, nominal, 1)) drifted.observe([{ signal: 'domain', detector: 'uad', pValue: p, nominal }]);
    const calm = new DriftWatch(1000);
    for (const p of stream(1000, nominal, nominal, 2)) calm.observe([{ signal: 'domain', detector: 'uad', pValue: p, nominal }]);
    const [d] = drifted.readings();
    const [c] = calm.readings();
    expect(d.rate).toBeGreaterThan(0.15);
    expect(d.tailProbability).toBeLessThan(THRESHOLD);
    expect(c.rate).toBeLessThan(0.08);
    expect(c.tailProbability).toBeGreaterThan(THRESHOLD);
  });

  it('forgets instances beyond its window and restarts when the threshold changes', () => {
    const w = new DriftWatch(10);
    for (let i = 0; i < 10; i++) w.observe([{ signal: 'adversarial', detector: 'squeeze', pValue: 0.001, nominal: 0.05 }]);
    for (let i = 0; i < 10; i++) w.observe([{ signal: 'adversarial', detector: 'squeeze', pValue: 0.9, nominal: 0.05 }]);
    expect(w.readings()[0]).toMatchObject({ n: 10, flagged: 0 });
    w.observe([{ signal: 'adversarial', detector: 'squeeze', pValue: 0.001, nominal: 0.01 }]);
    expect(w.readings()[0]).toMatchObject({ n: 1, flagged: 1, nominal: 0.01 });
  });

  it('exports the rate and the tail probability per signal and detector at scrape time', async () => {
    const w = new DriftWatch(100);
    for (const p of stream(100, 0.2, 0.05, 3)) w.observe([{ signal: 'domain', detector: 'uad', pValue: p, nominal: 0.05 }]);
    const m = createMetrics({ processMetrics: false, drift: () => w.readings() });
    const text = await m.registry.metrics();
    expect(text).toMatch(/^warden_flag_rate\{signal="domain",detector="uad"\} 0\.\d+$/m);
    expect(text).toMatch(/^warden_drift_tail_probability\{signal="domain",detector="uad"\} [0-9.e-]+$/m);
  });
});
