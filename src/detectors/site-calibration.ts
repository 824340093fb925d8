/**
 * Site calibration (`warden calibrate`): a fitted bundle's conformal calibration redone on a site's own clean
 * instances, without refitting, so that its p-values are valid for the site's images (scanner, processing,
 * population). Optionally the detectors of some signals (`domain`) are refitted on one part of the site data and
 * calibrated on the rest (split by study by the caller).
 *
 * Every detector goes through `recalibrate()` — the calibration half of `fitAndCalibrate` — so a detector's own share
 * of the calibration data (UAD's per-layer half) is redone on the site too. Detectors that are not refitted are
 * calibrated on every site instance: none of them was seen by the detector before.
 */

import type { Signal } from '../core/types';
import { WardenError } from '../core/errors';
import { type Detector, type FeatureTable, fitAndCalibrate, recalibrate } from './detector';
import type { BundleContents, BundleHeader } from './bundle';
import { FittedBundle, bundleFromContents } from './fitted-bundle';
import { getDetectorFactory } from './registry';

export interface SiteRefit {
  /** Detectors whose signal is listed are refitted (e.g. ['domain']). */
  signals: Signal[];
  /** Site instances the refitted detectors are fitted on. */
  train: FeatureTable;
  /** Site instances (other studies) the refitted detectors are calibrated on. */
  calibration: FeatureTable;
  /** How the site data was split, for the header (no UIDs). */
  split: string;
}

export interface SiteCalibrationOptions {
  /** Where the site's clean instances came from, for the header (no UIDs, no credentials). */
  source: string;
  /** Small facts about the site sample for the header (studies, instances, skipped…); never UIDs. */
  site?: Record<string, unknown>;
  refit?: SiteRefit;
  /** Calibration time (default now). */
  now?: Date;
}

export interface SiteCalibration {
  contents: BundleContents;
  bundle: FittedBundle;
  /** Ids of the refitted detectors. */
  refitted: string[];
  /** Per detector: the number of site instances its calibration was computed on. */
  calibratedOn: Record<string, number>;
}

/**
 * Recalibrates every detector of `contents` on the site's clean features `site` (all of them; with `refit`, `site`
 * must be train ∪ calibration). The model binding is kept; the header says where the calibration came from.
 * @throws USAGE (empty site sample), FEATURE_SHAPE_MISMATCH, BUNDLE_INVALID
 */
export function recalibrateBundle(contents: BundleContents & { header: BundleHeader }, site: FeatureTable, opts: SiteCalibrationOptions): SiteCalibration {
  if (site.n < 2) throw new WardenError('USAGE', `Site calibration needs at least 2 clean instances (got ${site.n}).`);
  if (site.numClasses !== contents.header.numClasses) {
    throw new WardenError('FEATURE_SHAPE_MISMATCH', `The site features have ${site.numClasses} classes; the bundle was fitted for ${contents.header.numClasses}.`);
  }
  const { header } = contents;
  // a fresh copy of the shipped detectors (the caller may still hold the shipped bundle for the before/after report)
  const restored = bundleFromContents(contents, header.model.sha256, 'The bundle to recalibrate');
  const refitted: string[] = [];
  const calibratedOn: Record<string, number> = {};
  const detectors: Record<string, Detector> = {};
  for (const record of contents.detectors) {
    let d = restored.detectors[record.id];
    if (opts.refit && opts.refit.signals.includes(d.signal)) {
      d = getDetectorFactory(record.kind).create(record.state.params);
      fitAndCalibrate(d, opts.refit.train, opts.refit.calibration);
      refitted.push(record.id);
      calibratedOn[record.id] = opts.refit.calibration.n;
    } else {
      recalibrate(d, site);
      calibratedOn[record.id] = site.n;
    }
    detectors[record.id] = d;
  }
  const now = (opts.now ?? new Date()).toISOString();
  const ns = new Set(Object.values(calibratedOn));
  const { detectors: _shippedRecords, ...shipped } = header;
  const newHeader: BundleContents['header'] = {
    ...shipped,
    createdAt: now,
    fit: opts.refit && refitted.length
      ? { ...shipped.fit, refit: { detectors: refitted, n: opts.refit.train.n, source: opts.source, split: opts.refit.split, date: now } }
      : shipped.fit,
    calibration: {
      // the instances the calibration was computed on (per detector when they differ: refitted ones use fewer)
      n: ns.size === 1 ? [...ns][0] : site.n,
      source: opts.source,
      targetFpr: shipped.calibration.targetFpr,
      date: now,
      ...(ns.size > 1 ? { perDetector: calibratedOn } : {}),
      ...(opts.site ? { site: opts.site } : {}),
      // the calibration this one replaces (one level deep: what the bundle was recalibrated from)
      previous: { n: shipped.calibration.n, ...(shipped.calibration.source ? { source: shipped.calibration.source } : {}), createdAt: shipped.createdAt },
    },
  };
  const out: BundleContents = {
    header: newHeader,
    detectors: contents.detectors.map((r) => ({ id: r.id, kind: r.kind, state: detectors[r.id].save() })),
  };
  return {
    contents: out,
    bundle: new FittedBundle(header.model.sha256, detectors),
    refitted,
    calibratedOn,
  };
}
