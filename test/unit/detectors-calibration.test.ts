import { ConformalCalibrator } from '../../src/detectors';
import { auroc, eps255, rateAtOrBelow, rocCurve } from '../../src/eval/evaluation';
import { ledoitWolf, spdInverse, subsampleIndices } from '../../src/detectors/linalg';
import { combine } from '../../src/detectors/uad';
import { parseCsv, toCsv } from '../../src/eval/dataset';

describe('ConformalCalibrator', () => {
  const cal = new ConformalCalibrator([5, 1, 3, 2, 4]); // n = 5

  it('gives (1 + #{cal ≥ s}) / (n + 1)', () => {
    expect(cal.pValue(0)).toBeCloseTo(1);
    expect(cal.pValue(3)).toBeCloseTo(4 / 6);
    expect(cal.pValue(3.5)).toBeCloseTo(3 / 6);
    expect(cal.pValue(5)).toBeCloseTo(2 / 6);
    expect(cal.pValue(99)).toBeCloseTo(1 / 6);
    expect(cal.pValue(NaN)).toBeCloseTo(1 / 6);
  });

  it('threshold(fpr) agrees with pValue ≤ fpr exactly when score > threshold', () => {
    const big = new ConformalCalibrator(Array.from({ length: 999 }, (_, i) => i));
    for (const fpr of [0.001, 0.005, 0.01, 0.05, 0.2]) {
      const t = big.threshold(fpr);
      for (const s of [t - 0.5, t, t + 0.5, t + 1]) expect(big.pValue(s) <= fpr).toBe(s > t);
    }
    expect(big.threshold(0.0001)).toBe(Infinity);
  });

  it('refuses empty or NaN calibration sets', () => {
    expect(() => new ConformalCalibrator([])).toThrow(/at least one/);
    expect(() => new ConformalCalibrator([1, NaN])).toThrow(/NaN/);
  });
});

describe('evaluation maths', () => {
  it('AUROC by Mann–Whitney with ties', () => {
    expect(auroc([0, 1, 2], [3, 4])).toBe(1);
    expect(auroc([3, 4], [0, 1])).toBe(0);
    expect(auroc([1, 1], [1, 1])).toBe(0.5);
    expect(auroc([0, 2], [1, 3])).toBe(0.75);
  });

  it('rates, ROC ends and ε parsing', () => {
    expect(rateAtOrBelow([0.01, 0.05, 0.5, 0.04], 0.05)).toBe(0.75);
    const roc = rocCurve([0, 1, 2], [1.5, 3]);
    expect(roc[0]).toEqual([0, 0]);
    expect(roc[roc.length - 1]).toEqual([1, 1]);
    expect(eps255('2/255')).toBe(2);
    expect(eps255('0.0313725')).toBeCloseTo(8, 2);
    expect(eps255('4')).toBe(4);
    expect(eps255('')).toBeNull();
  });

  it('p-value combinations grow as p-values shrink', () => {
    for (const how of ['cauchy', 'fisher', 'bonferroni'] as const) {
      expect(combine([0.001, 0.5, 0.5], how)).toBeGreaterThan(combine([0.1, 0.5, 0.5], how));
      expect(Number.isFinite(combine([1 / 400, 399 / 400], how))).toBe(true);
    }
  });
});

describe('linear algebra', () => {
  it('Ledoit–Wolf shrinks towards μI and the inverse is an inverse', () => {
    const n = 50;
    const d = 4;
    const x = new Float64Array(n * d);
    for (let i = 0; i < x.length; i++) x[i] = Math.sin(i * 1.7) + (i % d) * 0.1 * Math.cos(i);
    // centre
    for (let j = 0; j < d; j++) {
      let m = 0;
      for (let i = 0; i < n; i++) m += x[i * d + j];
      for (let i = 0; i < n; i++) x[i * d + j] -= m / n;
    }
    const { cov, shrinkage } = ledoitWolf(x, n, d);
    expect(shrinkage).toBeGreaterThanOrEqual(0);
    expect(shrinkage).toBeLessThanOrEqual(1);
    const inv = spdInverse(cov, d);
    for (let a = 0; a < d; a++) {
      for (let b = 0; b < d; b++) {
        let s = 0;
        for (let k = 0; k < d; k++) s += cov[a * d + k] * inv[k * d + b];
        expect(s).toBeCloseTo(a === b ? 1 : 0, 9);
      }
    }
  });

  it('seeded subsampling is deterministic, sorted and without replacement', () => {
    const a = subsampleIndices(1000, 100, 7);
    expect(Array.from(a)).toEqual(Array.from(subsampleIndices(1000, 100, 7)));
    expect(new Set(a).size).toBe(100);
    expect(Array.from(a)).toEqual(Array.from(a).sort((x, y) => x - y));
    expect(subsampleIndices(5, 10, 1).length).toBe(5);
  });
});

describe('CSV', () => {
  it('round-trips quoted fields', () => {
    const rows = [{ a: '1', b: 'x,"y"' }, { a: '', b: 'line\nbreak' }];
    expect(parseCsv(toCsv(rows))).toEqual(rows);
  });
});
