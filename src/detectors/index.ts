/** Public surface of the detect stage: the Detector contract, the registry, the detectors and their bundles. */
export * from './detector';
export { DETECTORS, DEFAULT_DETECTORS, getDetectorFactory } from './registry';
export type { DetectorFactory } from './registry';
export { BUNDLE_FORMAT_VERSION, bundleHeaderSchema, decodeBundle, encodeBundle, readBundleFile, writeBundleFile } from './bundle';
export type { BundleContents, BundleHeader } from './bundle';
export { DEFAULT_SPECS, FittedBundle, bundleFromContents, fitBundle, loadBundle, saveBundle } from './fitted-bundle';
export type { DetectorBundle, DetectorSpec, FitBundleOptions } from './fitted-bundle';
export { KdDetector } from './kd';
export { LidDetector } from './lid';
export { MgmDetector } from './mgm';
export { UadDetector, combine } from './uad';
export { NrdDetector } from './nrd';
export { mulberry32 } from './linalg';
export { recalibrateBundle } from './site-calibration';
export type { SiteCalibration, SiteCalibrationOptions, SiteRefit } from './site-calibration';
