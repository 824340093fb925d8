/** The review page (/ui): server-rendered HTML and a JSON API over the audit store and the quarantine. */
export { createReviewRouter, isSameOrigin, type ReviewRouterDeps } from './router';
export { renderThumbnail, quarantineThumbnails, thumbnailSize, THUMBNAIL_MAX_PX } from './thumbnail';
export { calibrationPlotSvg, type CalibrationPlotInput } from './plot';
export { bundleCalibration } from './calibration';
