/**
 * Seeded randomness for the fuzzer. Every case draws from its own generator, seeded from (run seed, target, case
 * index) alone, so one case replays without running the ones before it (`npm run fuzz -- --target T --seed S
 * --replay I`).
 */

/** A 32-bit mix of the inputs (murmur3 finaliser over each word). */
function mix(h: number, v: number): number {
  h = Math.imul(h ^ v, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

export class Rng {
  #a: number;
  constructor(seed: number) { this.#a = seed >>> 0; }

  /** The generator of case `index` of `target` in a run seeded `seed`. */
  static forCase(seed: number, target: string, index: number): Rng {
    return new Rng(mix(mix(mix(0x9e3779b9, seed >>> 0), Math.floor(seed / 2 ** 32)), mix(hashString(target), index >>> 0)));
  }

  /** Uniform in [0, 1) (mulberry32). */
  next(): number {
    this.#a = (this.#a + 0x6d2b79f5) >>> 0;
    let t = this.#a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Integer in [lo, hi] (inclusive). */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }

  /** Integer in [0, n). */
  below(n: number): number {
    return Math.floor(this.next() * n);
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from an empty list');
    return items[this.below(items.length)];
  }

  /** Picks by weight: `[[weight, value], …]`. */
  weighted<T>(table: readonly (readonly [number, T])[]): T {
    const total = table.reduce((n, [w]) => n + w, 0);
    let r = this.next() * total;
    for (const [w, v] of table) {
      if ((r -= w) < 0) return v;
    }
    return table[table.length - 1][1];
  }

  /** Small counts: 1 with probability 1/2, 2 with 1/4, … up to `max`. */
  geometric(max: number): number {
    let n = 1;
    while (n < max && this.chance(0.5)) n++;
    return n;
  }

  bytes(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) out[i] = this.below(256);
    return out;
  }
}

/** A fresh run seed when none is given (printed, so the run can be repeated). */
export function randomSeed(): number {
  return Math.floor(Math.random() * 2 ** 31);
}
