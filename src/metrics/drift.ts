/**
 * Drift watch: is the calibration still true at this site? For each signal and each of its detectors, the rolling
 * rate at which live instances reach the flag threshold (their p-value ≤ the signal's flagFpr) over the last
 * `window` scanned instances, and the binomial upper-tail probability of seeing at least that many under the nominal
 * rate. On clean traffic a conformal p-value is below α with probability α, so a tiny tail probability means the site's
 * images no longer look like the calibration set (new scanner, new processing, new population — or an attack
 * campaign): recalibrate (`warden calibrate`) or investigate. docs/operations.md has the runbook.
 */

export interface DriftKey {
  signal: 'adversarial' | 'domain';
  detector: string;
}

export interface DriftReading extends DriftKey {
  /** Instances in the window. */
  n: number;
  /** Of those, at or below the nominal rate's threshold. */
  flagged: number;
  rate: number;
  nominal: number;
  /** P(X ≥ flagged) for X ~ Binomial(n, nominal); 1 when the window is empty. */
  tailProbability: number;
}

/** A fixed-size window of booleans (ring buffer) with a running count. */
class Window {
  readonly #bits: Uint8Array;
  #next = 0;
  #size = 0;
  #ones = 0;
  constructor(readonly capacity: number) { this.#bits = new Uint8Array(capacity); }
  push(v: boolean): void {
    if (this.#size === this.capacity) this.#ones -= this.#bits[this.#next];
    else this.#size++;
    this.#bits[this.#next] = v ? 1 : 0;
    this.#ones += v ? 1 : 0;
    this.#next = (this.#next + 1) % this.capacity;
  }
  get size(): number { return this.#size; }
  get ones(): number { return this.#ones; }
}

export class DriftWatch {
  readonly #windows = new Map<string, { key: DriftKey; nominal: number; window: Window }>();
  constructor(readonly windowSize = 1000) {}

  /** One scanned instance: the p-value of each detector of each signal, against the signal's flag rate. */
  observe(readings: { signal: 'adversarial' | 'domain'; detector: string; pValue: number; nominal: number }[]): void {
    for (const r of readings) {
      if (!Number.isFinite(r.pValue)) continue;
      const id = `${r.signal}\u0000${r.detector}`;
      let w = this.#windows.get(id);
      if (!w || w.nominal !== r.nominal) {
        // a new threshold (reload, new policy) starts a new window: the old counts answered another question
        w = { key: { signal: r.signal, detector: r.detector }, nominal: r.nominal, window: new Window(this.windowSize) };
        this.#windows.set(id, w);
      }
      w.window.push(r.pValue <= r.nominal);
    }
  }

  readings(): DriftReading[] {
    return [...this.#windows.values()].map(({ key, nominal, window }) => ({
      ...key, n: window.size, flagged: window.ones, nominal,
      rate: window.size ? window.ones / window.size : 0,
      tailProbability: binomialUpperTail(window.ones, window.size, nominal),
    }));
  }
}

const LOG_FACTORIAL: number[] = [0];
function logFactorial(n: number): number {
  for (let i = LOG_FACTORIAL.length; i <= n; i++) LOG_FACTORIAL[i] = LOG_FACTORIAL[i - 1] + Math.log(i);
  return LOG_FACTORIAL[n];
}

/** P(X ≥ k), X ~ Binomial(n, p), summed exactly in log space (n up to a few thousand). */
export function binomialUpperTail(k: number, n: number, p: number): number {
  if (n === 0 || k <= 0) return 1;
  if (k > n) return 0;
  if (p <= 0) return 0;
  if (p >= 1) return 1;
  const lp = Math.log(p);
  const lq = Math.log1p(-p);
  let max = -Infinity;
  const terms: number[] = [];
  for (let i = k; i <= n; i++) {
    const t = logFactorial(n) - logFactorial(i) - logFactorial(n - i) + i * lp + (n - i) * lq;
    terms.push(t);
    if (t > max) max = t;
  }
  let sum = 0;
  for (const t of terms) sum += Math.exp(t - max);
  return Math.min(1, Math.exp(max) * sum);
}
