import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Command } from 'commander';
import { WardenError } from '../core/errors';
import { DEFAULT_MODEL_PATH } from '../core/defaults';
import { loadRuntimeConfig } from '../config';
import type { Runtime, ScanRecord } from '../pipeline';
import { unreachableThresholds } from '../policy';
import { DEFAULT_SPECS, fitBundle, saveBundle, viewsOfSpecs, type DetectorSpec } from '../detectors';
import { parseSourceSpec, type FeatureDump } from '../eval';
import { EXTRACT_ONLY, cliRuntime, type ModelFlags } from './runtime';
import { extractFeatures, featuresFor } from './features';
import { FitSummary, applicableSpecs, splitByStudy, type StudySplit } from './fit-sources';

/**
 * `warden fit --model m.onnx --train <src> --calibration <src> --out <bundle>`: fits every detector on clean
 * training features and calibrates it on the clean calibration split; the bundle is bound to the model's sha256.
 * A source is a folder of DICOM files, a lab manifest.csv[:split,…] (kind = clean rows only) or a feature dump
 * from `warden features` (same syntax), e.g.
 *   warden fit --train data/manifest.csv:model_train,detector_fit --calibration data/manifest.csv:calibration --out b
 * or one folder of clean studies split by StudyInstanceUID (seeded):
 *   warden fit --model vendor.warden.onnx --from clean/ --calibration-fraction 0.3 --seed 1 --out b
 */

interface FitCliOptions extends Omit<ModelFlags, 'detectors'> {
  train?: string;
  calibration?: string;
  from?: string;
  calibrationFraction: string;
  seed: string;
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
    .option('--train <src>', "clean training data: folder | manifest.csv[:split,…] | feature dump[:split,…]")
    .option('--calibration <src>', 'clean calibration data (same forms), disjoint from --train')
    .option('--from <dir>', 'instead of --train/--calibration: one folder of clean DICOM studies, split by StudyInstanceUID')
    .option('--calibration-fraction <f>', 'with --from: share of the instances (whole studies) kept for calibration', '0.3')
    .option('--seed <n>', 'with --from: seed of the study split', '1')
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
      if (opts.from ? opts.train || opts.calibration : !(opts.train && opts.calibration)) {
        throw new WardenError('USAGE', 'Give --train and --calibration, or --from <folder> (split by study), not both.');
      }
      const requested = resolveSpecs(opts.detectors, opts.spec);
      const policy = loadRuntimeConfig(opts.config).policy;
      let runtime: Runtime | undefined;
      const getPipeline = async () => {
        runtime ??= await cliRuntime({ config: opts.config, model: modelPath, workers: opts.workers, threads: opts.threads }, { ...EXTRACT_ONLY, views: viewsOfSpecs(requested) });
        return runtime.pipeline;
      };
      const summary = new FitSummary();
      const onTrain = { label: 'train      ', onRecord: (r: ScanRecord) => summary.record('train', r) };
      const onCal = { label: 'calibration', onRecord: (r: ScanRecord) => summary.record('calibration', r) };
      try {
        let train: FeatureDump;
        let cal: FeatureDump;
        let split: StudySplit | undefined;
        if (opts.from) {
          split = await splitByStudy(opts.from, Number(opts.calibrationFraction), Number(opts.seed));
          for (const s of split.skipped) summary.skip(s.reason);
          process.stderr.write(`${opts.from}: ${split.files} files, ${split.studies.train + split.studies.calibration} studies → ${split.train.length} training instances (${split.studies.train} studies), ${split.calibration.length} calibration (${split.studies.calibration} studies)\n`);
          train = await extractFeatures(await getPipeline(), split.train, onTrain);
          cal = await extractFeatures(await getPipeline(), split.calibration, onCal);
        } else {
          train = await featuresFor(parseSourceSpec(opts.train!), opts.splitColumn, 'clean', getPipeline, onTrain);
          cal = await featuresFor(parseSourceSpec(opts.calibration!), opts.splitColumn, 'clean', getPipeline, onCal);
        }
        for (const [what, d] of [['--train', train], ['--calibration', cal]] as const) {
          if (d.header.modelSha256 !== modelSha256) {
            throw new WardenError('BUNDLE_MODEL_MISMATCH', `The features of ${what} were extracted with model sha256 ${d.header.modelSha256.slice(0, 12)}…, not with ${modelPath} (${modelSha256.slice(0, 12)}…); re-run \`warden features\` with this model.`);
          }
        }
        if (train.table.n < 2 || cal.table.n < 1) {
          throw new WardenError('USAGE', `Too few usable clean instances: ${train.table.n} for training (2 or more needed), ${cal.table.n} for calibration.`);
        }
        const trainFiles = new Set(train.meta.map((m) => m.file).filter(Boolean));
        const overlap = cal.meta.filter((m) => m.file && trainFiles.has(m.file)).length;
        if (overlap > 0) throw new WardenError('USAGE', `${overlap} calibration instances are also in the training data; calibration must be held out or its p-values are not valid.`);
        const { specs, leftOut } = applicableSpecs(requested, Object.keys(train.table.layers), Boolean(opts.detectors || opts.spec));
        if (specs.length === 0) throw new WardenError('USAGE', `None of the detectors can be fitted on this model's outputs: ${leftOut.join('; ')}.`);
        process.stderr.write(`fitting ${specs.map((s) => s.id).join(', ')} on ${train.table.n} clean training instances, calibrating on ${cal.table.n}\n`);
        const t0 = Date.now();
        const { bundle, contents } = fitBundle(train.table, cal.table, {
          modelSha256,
          modelFile: path.basename(modelPath),
          specs,
          trainSource: opts.train ?? `${opts.from} (split by study, calibration fraction ${opts.calibrationFraction}, seed ${opts.seed})`,
          calibrationSource: opts.calibration ?? opts.from,
          onDetector: (id, i, total) => process.stderr.write(`  [${i}/${total}] ${id} fitted and calibrated (${((Date.now() - t0) / 1000).toFixed(1)} s)\n`),
        });
        saveBundle(opts.out, contents);
        summary.used.train = train.table.n;
        summary.used.calibration = cal.table.n;
        process.stderr.write(summary.lines({
          source: opts.from ? `${opts.from}, split by StudyInstanceUID (calibration fraction ${opts.calibrationFraction}, seed ${opts.seed})` : `--train ${opts.train}, --calibration ${opts.calibration}`,
          studies: split?.studies, detectors: specs.map((s) => s.id), leftOut, bundle: opts.out, bundleBytes: fs.statSync(opts.out).size, modelSha256,
        }).join('\n') + '\n');
        // The configured policy's thresholds this calibration set cannot resolve (e.g. adversarial.blockFpr 0.005 needs ≥ 199 scores).
        const floors = Object.fromEntries(train.header.classes.map((label, c) => [label, Object.fromEntries(Object.entries(bundle.detectors).map(([id, d]) => [id, d.pValueFloor(c)]))]));
        for (const problem of unreachableThresholds(policy, floors)) process.stderr.write(`warning: ${problem}\n`);
      } finally {
        await runtime?.close();
      }
    });
}
