import * as path from 'node:path';

/** Repository root, whether running from src/ (ts-jest) or dist/ (built). */
export const PROJECT_ROOT = path.resolve(__dirname, '..', '..');
/** The embedded default model and its fitted detector bundle. */
export const DEFAULT_MODEL_PATH = path.join(PROJECT_ROOT, 'models', 'warden-cxr-ref.onnx');
export const DEFAULT_BUNDLE_PATH = path.join(PROJECT_ROOT, 'models', 'warden-cxr-ref.bundle');
