/** Size limits enforced before any large allocation. */
export interface DecodeLimits {
  /** Largest accepted input (and inflated dataset for Deflated Explicit VR LE), in bytes. */
  maxBytes: number;
  /** Largest rows × columns of one frame. */
  maxPixelsPerFrame: number;
  /** Largest Number of Frames. */
  maxFrames: number;
  /** Largest rows × columns × frames over the instance (the output holds 4 bytes per sample). */
  maxTotalPixels: number;
  /**
   * Most elements (nested ones included) dcmjs may read from one dataset. It spends microseconds per element on the
   * event loop, so a few megabytes of empty elements cost seconds; the corpus' largest dataset has 1,246.
   */
  maxElements: number;
}

export const DEFAULT_DECODE_LIMITS: DecodeLimits = Object.freeze({
  maxBytes: 512 * 1024 * 1024,
  maxPixelsPerFrame: 64 * 1024 * 1024,
  maxFrames: 4096,
  maxTotalPixels: 128 * 1024 * 1024,
  maxElements: 100_000,
});

export function resolveLimits(partial?: Partial<DecodeLimits>): DecodeLimits {
  const out = { ...DEFAULT_DECODE_LIMITS };
  if (partial) {
    for (const k of Object.keys(out) as (keyof DecodeLimits)[]) {
      const v = partial[k];
      if (typeof v === 'number' && Number.isFinite(v) && v > 0) out[k] = v;
    }
  }
  return out;
}
