// One rule, per folder: the stages import only downstream-independent pieces, never a stage upstream of them, and
// other folders only through their index (public surface). The flow is ingest → decode (dicom) → preprocess/extract
// (models) → detect (detectors) → decide (policy) → forward (proxy); pipeline composes them; core is shared by all.
// docs/architecture.md draws it; test/unit/architecture.test.ts shows the rule fails on an upstream import.
'use strict';
const tsParser = require('@typescript-eslint/parser');

const FOLDERS = ['core', 'config', 'dicom', 'models', 'detectors', 'policy', 'pipeline', 'proxy', 'metrics', 'eval', 'audit', 'quarantine', 'review', 'alerts', 'cli'];

/** What each folder may import from other folders of src/ (core is always allowed). */
const ALLOWED = {
  core: [],
  config: ['policy'],
  dicom: [],
  models: [],
  detectors: [],
  policy: [],
  metrics: ['policy'],
  pipeline: ['config', 'dicom', 'models', 'detectors', 'policy'],
  proxy: ['config', 'dicom', 'policy', 'pipeline', 'metrics', 'audit', 'quarantine', 'review', 'alerts'],
  eval: ['detectors', 'policy'],
  // the production trail: a side channel the proxy feeds; the review page reads it and renders thumbnails
  audit: [],
  quarantine: ['audit'],
  review: ['audit', 'quarantine', 'dicom', 'models', 'detectors'],
  alerts: ['policy'],
  cli: ['config', 'dicom', 'models', 'detectors', 'policy', 'pipeline', 'proxy', 'eval', 'audit', 'quarantine'],
};

const alt = (names) => names.join('|');

function restrictionsFor(folder) {
  const forbidden = FOLDERS.filter((f) => f !== folder && f !== 'core' && !ALLOWED[folder].includes(f));
  const allowedOthers = ALLOWED[folder];
  const patterns = [];
  if (forbidden.length) {
    patterns.push({
      regex: `^(\\.\\./)+(${alt(forbidden)})(/.*)?$`,
      message: `src/${folder} may not import this folder: the stages flow one way (see docs/architecture.md and eslint.config.js).`,
    });
  }
  if (allowedOthers.length) {
    patterns.push({
      regex: `^(\\.\\./)+(${alt(allowedOthers)})/.+$`,
      message: 'Import another folder through its index (its public surface), not one of its files.',
    });
  }
  return patterns;
}

module.exports = [
  { ignores: ['dist/**', 'node_modules/**', 'lab/**', 'coverage/**', 'test/**', 'scripts/**', 'deploy/**', 'bin/**', 'data/**'] },
  ...FOLDERS.map((folder) => ({
    files: [`src/${folder}/**/*.ts`],
    languageOptions: { parser: tsParser, ecmaVersion: 2022, sourceType: 'module' },
    rules: { 'no-restricted-imports': ['error', { patterns: restrictionsFor(folder) }] },
  })),
];
