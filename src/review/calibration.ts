/**
 * calibration(detector) over a loaded detector bundle: the sorted clean calibration scores each detector keeps
 * for its conformal p-values. A detector calibrated per predicted class has no pooled set: its classes' sets
 * are merged (the plot then shows all clean scores, not only the instance's class).
 */
import type { DetectorBundle } from '../detectors';

interface WithCalibration {
  calibrationScores?: ArrayLike<number>;
  save?: () => { arrays: Record<string, ArrayLike<number>> };
}

export function bundleCalibration(bundle: Pick<DetectorBundle, 'detectors'>): (detector: string) => Float64Array | null {
  const cache = new Map<string, Float64Array | null>();
  return (detector: string) => {
    if (cache.has(detector)) return cache.get(detector)!;
    const d = bundle.detectors?.[detector] as WithCalibration | undefined;
    let scores: Float64Array | null = null;
    if (d?.calibrationScores && d.calibrationScores.length) {
      scores = Float64Array.from(d.calibrationScores);
    } else if (d?.save) {
      const perClass = Object.entries(d.save().arrays).filter(([k]) => /^calibration_scores_class_\d+$/.test(k)).map(([, v]) => Array.from(v));
      if (perClass.length) scores = Float64Array.from(perClass.flat());
    }
    scores?.sort();
    cache.set(detector, scores);
    return scores;
  };
}
