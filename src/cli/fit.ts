import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Command } from 'commander';
import { WardenError } from '../core/errors';
import { DEFAULT_MODEL_PATH } from '../core/defaults';
import type { Runtime } from '../pipeline';
import { EXTRACT_ONLY, cliRuntime, type ModelFlags } from './runtime';
import { DEFAULT_SPECS, fitBundle, saveBundle, type DetectorSpec } from '../detectors';
import { parseSourceSpec } from '../eval';
import { featuresFor } from './features';

/**
 * `warden fit --model m.onnx --train <src> --calibration <src> --out <bundle>`: fits every detector on clean
 * training features and calibrates it on the clean calibration split; the bundle is bound to the model's sha256.
 * A source is a folder of DICOM files, a lab manifest.csv[:split,…] (kind = clean rows only) or a feature dump
 * from `warden features` (same syntax), e.g.
 *   warden fit --train data/manifest.csv:model_train,detector_fit --calibration data/manifest.csv:calibration --out b
 */

interface FitCliOptions extends Omit<ModelFlags, 'detectors'> {
  train: string;
  calibration: string;
  out: string;
  splitColumn: string;
  detectors?: string;
  spec?: string;
}

export function sha256File(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/** `--detectors kd,lid` picks registry defaults; `--spec file.json` gives [{id, kind, params}] explicitly. */
export function resolveSpecs(detectors?: string, specFile?: string): DetectorSpec[] {
  if (specFile) {
    const specs = JSON.parse(fs.readFileSync(specFile, 'utf8')) as DetectorSpec[];
    if (!Array.isArray(specs) || specs.some((s) => typeof s.id !== 'string' || typeof s.kind !== 'string')) {
      throw new WardenError('USAGE', `${specFile} must hold a JSON array of {id, kind, params}.`);
    }
    return specs;
  }
  if (!detectors) return DEFAULT_SPECS;
  return detectors.split(',').map((s) => s.trim()).filter(Boolean).map((k) => DEFAULT_SPECS.find((s) => s.id === k) ?? { id: k, kind: k });
}

export function register(program: Command): void {
  program
    .command('fit')
    .description('Fit the detectors on clean data and calibrate them; writes a bundle bound to the model')
    .requiredOption('--train <src>', "clean training data: folder | manifest.csv[:split,…] | feature dump[:split,…]")
    .requiredOption('--calibration <src>', 'clean calibration data (same forms), disjoint from --train')
    .requiredOption('--out <bundle>', 'bundle file to write')
    .option('--model <file>', 'ONNX model (default: the embedded reference model)')
    .option('--split-column <name>', 'manifest column the :values select on', 'split')
    .option('--detectors <list>', 'detectors to fit, comma-separated (default kd,lid,mgm,uad)')
    .option('--spec <file>', 'JSON array of {id, kind, params} (overrides --detectors)')
    .option('--workers <n>', 'inference worker threads', '1')
    .option('--threads <n>', 'ONNX Runtime threads per worker', '1')
    .action(async (opts: FitCliOptions) => {
      const modelPath = path.resolve(opts.model ?? DEFAULT_MODEL_PATH);
      const modelSha256 = sha256File(modelPath);
      const specs = resolveSpecs(opts.detectors, opts.spec);
      const trainSpec = parseSourceSpec(opts.train);
      const calSpec = parseSourceSpec(opts.calibration);
      let runtime: Runtime | undefined;
      const getPipeline = async () => {
        runtime ??= await cliRuntime({ config: opts.config, model: modelPath, workers: opts.workers, threads: opts.threads }, EXTRACT_ONLY);
        return runtime.pipeline;
      };
      try {
        const train = await featuresFor(trainSpec, opts.splitColumn, 'clean', getPipeline, { label: 'train      ' });
        const cal = await featuresFor(calSpec, opts.splitColumn, 'clean', getPipeline, { label: 'calibration' });
        for (const [what, d] of [['--train', train], ['--calibration', cal]] as const) {
          if (d.header.modelSha256 !== modelSha256) {
            throw new WardenError('BUNDLE_MODEL_MISMATCH', `The features of ${what} were extracted with model sha256 ${d.header.modelSha256.slice(0, 12)}…, not with ${modelPath} (${modelSha256.slice(0, 12)}…); re-run \`warden features\` with this model.`);
          }
        }
        const trainFiles = new Set(train.meta.map((m) => m.file).filter(Boolean));
        const overlap = cal.meta.filter((m) => m.file && trainFiles.has(m.file)).length;
        if (overlap > 0) throw new WardenError('USAGE', `${overlap} calibration instances are also in the training data; calibration must be held out or its p-values are not valid.`);
        process.stderr.write(`fitting ${specs.map((s) => s.id).join(', ')} on ${train.table.n} clean training instances, calibrating on ${cal.table.n}\n`);
        const t0 = Date.now();
        const { contents } = fitBundle(train.table, cal.table, {
          modelSha256,
          modelFile: path.basename(modelPath),
          specs,
          trainSource: opts.train,
          calibrationSource: opts.calibration,
          onDetector: (id, i, total) => process.stderr.write(`  [${i}/${total}] ${id} fitted and calibrated (${((Date.now() - t0) / 1000).toFixed(1)} s)\n`),
        });
        saveBundle(opts.out, contents);
        process.stderr.write(`wrote ${opts.out} (${(fs.statSync(opts.out).size / 1e6).toFixed(2)} MB)\n`);
      } finally {
        await runtime?.close();
      }
    });
}
