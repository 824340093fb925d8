import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createInterface } from 'node:readline/promises';
import type { Command } from 'commander';
import { WardenError } from '../core/errors';
import { DEFAULT_PROBES, exposeModel, inspectModel, type ModelInspection, type Preprocess } from '../models';

/**
 * `warden model inspect <model.onnx>` and `warden model expose <in.onnx> --out <out.onnx>`: bring your own sealed
 * classifier (docs/byo-model.md). Values the manifest needs and the flags do not give are asked for when stdin is a
 * terminal; otherwise a missing required value is a USAGE error naming its flag.
 */

const WINDOWS = ['auto', 'bits', 'voi', 'percentile', 'minmax'] as const;

interface CommonOptions {
  inputSize?: string;
  logits?: string;
}

interface ExposeCliOptions extends CommonOptions {
  out: string;
  taps: string;
  classes?: string;
  window?: string;
  scale?: string;
  mean?: string;
  std?: string;
  invertMonochrome1?: string;
  resize: string;
  name?: string;
  modelVersion?: string;
  probes: string;
  seed: string;
}

function readModel(file: string): Uint8Array {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    throw new WardenError('MODEL_LOAD_FAILED', `Cannot read model ${file}: ${(err as Error).message}`, { cause: err });
  }
}

function parseSize(value: string | undefined): [number, number] | undefined {
  if (value === undefined) return undefined;
  const m = /^(\d+)[x×,](\d+)$/.exec(value.trim());
  if (!m || Number(m[1]) < 1 || Number(m[2]) < 1) throw new WardenError('USAGE', `--input-size must look like 224x224 (got ${value}).`);
  return [Number(m[1]), Number(m[2])];
}

function numbers(flag: string, value: string, count?: number[]): number[] {
  const list = value.split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  if (list.length === 0 || list.some((x) => !Number.isFinite(x)) || (count && !count.includes(list.length))) {
    throw new WardenError('USAGE', `${flag} must be ${count ? count.join(' or ') : 'one or more'} comma-separated number(s) (got ${value}).`);
  }
  return list;
}

function bool(flag: string, value: string): boolean {
  if (/^(true|yes|1)$/i.test(value)) return true;
  if (/^(false|no|0)$/i.test(value)) return false;
  throw new WardenError('USAGE', `${flag} must be true or false (got ${value}).`);
}

const shape = (s?: (number | string)[]) => `[${(s ?? []).join(', ')}]`;
/** A probed shape with its batch dimension shown as N (the probe ran one image). */
const probed = (s?: number[]) => shape(s ? ['N', ...s.slice(1)] : undefined);

export function formatInspection(file: string, bytes: Uint8Array, ins: ModelInspection): string {
  const lines: string[] = [];
  const sha = createHash('sha256').update(bytes).digest('hex');
  lines.push(`model   ${file} (${(bytes.length / 1e6).toFixed(2)} MB, sha256 ${sha.slice(0, 12)}…, opset ${ins.opset}, IR ${ins.irVersion}${ins.producer ? `, ${ins.producer}` : ''})`);
  lines.push(`input   ${ins.input.name} float32 ${shape(ins.input.shape)} NCHW, ${ins.input.channels} channel(s), ${ins.input.fixedBatch === undefined ? 'dynamic batch' : `fixed batch ${ins.input.fixedBatch}`}`);
  for (const o of ins.outputs) {
    const role = ins.logits?.output === o.name ? `  ← logits, ${ins.logits.classes} classes${ins.logits.softmax ? ' (a Softmax: its input is read as logits)' : ''}` : '';
    lines.push(`output  ${o.name} ${o.elemType} ${shape(o.shape ?? o.probedShape)}${role}`);
  }
  if (ins.penultimate) {
    const p = ins.penultimate;
    lines.push(`penultimate  ${p.tensor} ${probed(p.shape)}${p.pool ? ' (global-average-pooled)' : ''}, the input of ${p.feeds}`);
  }
  const spatial = new Set(ins.groups.flatMap((g) => g.tensors));
  lines.push(`candidate taps: ${spatial.size} feature maps of ${ins.candidates.length} candidate tensors (shapes from a probe run), by resolution:`);
  const byName = new Map(ins.candidates.map((c) => [c.name, c]));
  for (const g of ins.groups) {
    lines.push(`  ${g.resolution}`);
    for (const t of g.tensors) {
      const c = byName.get(t)!;
      const mark = ins.suggestedTaps.includes(t) ? '*' : c.preferred ? '+' : ' ';
      lines.push(`   ${mark} depth ${String(c.convDepth).padStart(3)}  ${c.op.padEnd(18)} ${probed(c.shape).padEnd(20)} ${t}`);
    }
  }
  lines.push(`  (* suggested, + post-activation or block output)`);
  lines.push(`suggested taps (${ins.suggestedTaps.length}): ${ins.suggestedTaps.join(' ')}`);
  for (const n of ins.notes) lines.push(`note: ${n}`);
  return lines.join('\n') + '\n';
}

async function askMissing(opts: ExposeCliOptions, ins: ModelInspection): Promise<void> {
  const interactive = Boolean(process.stdin.isTTY);
  const classCount = ins.logits?.classes;
  const required: { key: 'classes' | 'window'; flag: string; question: string }[] = [
    { key: 'classes', flag: '--classes', question: `Names of the ${classCount ?? '?'} classes of output '${ins.logits?.output ?? '?'}', in order, comma-separated` },
    { key: 'window', flag: '--window', question: `How modality values become [0, 1] before scale/mean/std (${WINDOWS.join(' | ')}; see docs/model-manifest.md)` },
  ];
  const optional: { key: 'scale' | 'mean' | 'std' | 'invertMonochrome1'; question: string; fallback: string }[] = [
    { key: 'scale', question: 'Range the [0, 1] value is mapped to, lo,hi', fallback: '0,1' },
    { key: 'mean', question: `Mean subtracted ${ins.input.channels === 1 ? '' : `per channel (1 or ${ins.input.channels} values)`}`.trimEnd(), fallback: '0' },
    { key: 'std', question: `Standard deviation divided by ${ins.input.channels === 1 ? '' : `per channel (1 or ${ins.input.channels} values)`}`.trimEnd(), fallback: '1' },
    { key: 'invertMonochrome1', question: 'Invert MONOCHROME1 images (true/false)', fallback: 'true' },
  ];
  if (!interactive) {
    const missing = required.find((r) => opts[r.key] === undefined);
    if (missing) {
      throw new WardenError('USAGE', `${missing.flag} is required when stdin is not a terminal: ${missing.question.toLowerCase()}${missing.key === 'classes' ? ', e.g. --classes normal,pneumonia' : ''}.`);
    }
    return;
  }
  // Lines are read through the iterator, which buffers them: answers typed (or pasted) ahead are not lost.
  const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: false });
  const lines = rl[Symbol.asyncIterator]();
  const ask = async (question: string): Promise<string> => {
    process.stderr.write(`${question}: `);
    const next = await lines.next();
    if (next.done) throw new WardenError('USAGE', `Input ended before "${question}" was answered; give the value as a flag instead.`);
    return String(next.value).trim();
  };
  try {
    for (const r of required) {
      while (opts[r.key] === undefined || opts[r.key] === '') opts[r.key] = (await ask(r.question)) || undefined;
    }
    for (const o of optional) {
      if (opts[o.key] === undefined) opts[o.key] = (await ask(`${o.question} [${o.fallback}]`)) || o.fallback;
    }
  } finally {
    rl.close();
  }
}

function preprocessOf(opts: ExposeCliOptions, channels: number): Preprocess {
  const window = opts.window as Preprocess['window'];
  if (!(WINDOWS as readonly string[]).includes(window)) throw new WardenError('USAGE', `--window must be one of ${WINDOWS.join(', ')} (got ${opts.window}).`);
  if (opts.resize !== 'bilinear' && opts.resize !== 'nearest') throw new WardenError('USAGE', `--resize must be bilinear or nearest (got ${opts.resize}).`);
  const scale = numbers('--scale', opts.scale ?? '0,1', [2]);
  return {
    window,
    invertMonochrome1: bool('--invert-monochrome1', opts.invertMonochrome1 ?? 'true'),
    resize: opts.resize,
    scale: [scale[0], scale[1]],
    mean: numbers('--mean', opts.mean ?? '0', [1, channels]),
    std: numbers('--std', opts.std ?? '1', [1, channels]),
  };
}

export function register(program: Command): void {
  const model = program.command('model').description('Bring your own ONNX classifier: inspect it, expose feature outputs and a manifest');
  model
    .command('inspect')
    .description('Inputs, outputs, opset, candidate feature maps by resolution and the suggested taps')
    .argument('<model>', 'ONNX model file')
    .option('--json', 'print the inspection as JSON')
    .option('--input-size <HxW>', 'input height and width, for models whose input size is symbolic')
    .option('--logits <output>', 'the logits output, when several outputs have shape [N, classes]')
    .action(async (file: string, opts: CommonOptions & { json?: boolean }) => {
      const bytes = readModel(file);
      const ins = await inspectModel(bytes, { inputSize: parseSize(opts.inputSize), logits: opts.logits });
      process.stdout.write(opts.json ? JSON.stringify(ins, null, 2) + '\n' : formatInspection(file, bytes, ins));
    });
  model
    .command('expose')
    .description('Add pooled feature outputs and the Warden manifest to a sealed model; proves the original outputs unchanged')
    .argument('<model>', 'the sealed ONNX model (left untouched)')
    .requiredOption('--out <file>', 'exposed model to write')
    .option('--taps <auto|names>', "'auto' (the suggested taps) or tensor names, comma-separated", 'auto')
    .option('--classes <names>', 'class names in logit order, comma-separated')
    .option('--window <rule>', `windowing: ${WINDOWS.join(' | ')}`)
    .option('--scale <lo,hi>', 'range the windowed [0, 1] value is mapped to (default 0,1)')
    .option('--mean <m[,m,m]>', 'per-channel mean subtracted after scaling (default 0)')
    .option('--std <s[,s,s]>', 'per-channel standard deviation divided after the mean (default 1)')
    .option('--invert-monochrome1 <bool>', 'MONOCHROME1 images become 1 - x after windowing (default true)')
    .option('--resize <mode>', 'bilinear | nearest', 'bilinear')
    .option('--name <name>', 'manifest name (default: the output file name)')
    .option('--model-version <v>', 'manifest version (default: sha256:<first 12 hex of the sealed model>)')
    .option('--logits <output>', 'the logits output, when several outputs have shape [N, classes]')
    .option('--input-size <HxW>', 'input height and width, for models whose input size is symbolic')
    .option('--probes <n>', 'probe inputs for the bit-identity proof', String(DEFAULT_PROBES))
    .option('--seed <n>', 'seed of the probe inputs', '1')
    .action(async (file: string, opts: ExposeCliOptions) => {
      if (path.resolve(opts.out) === path.resolve(file)) throw new WardenError('USAGE', '--out must not be the sealed model itself: expose writes a new file.');
      const probes = Number(opts.probes);
      if (!Number.isInteger(probes) || probes < 1) throw new WardenError('USAGE', `--probes must be a positive integer (got ${opts.probes}).`);
      const bytes = readModel(file);
      const inputSize = parseSize(opts.inputSize);
      const inspection = await inspectModel(bytes, { inputSize, logits: opts.logits });
      await askMissing(opts, inspection);
      const res = await exposeModel(bytes, {
        inspection,
        inputSize,
        logits: opts.logits,
        taps: opts.taps === 'auto' ? 'auto' : opts.taps.split(',').map((s) => s.trim()).filter(Boolean),
        classes: (opts.classes ?? '').split(',').map((s) => s.trim()).filter(Boolean),
        preprocess: preprocessOf(opts, inspection.input.channels),
        name: opts.name ?? path.basename(opts.out).replace(/\.onnx$/i, ''),
        version: opts.modelVersion,
        probes,
        seed: Number(opts.seed),
      });
      fs.writeFileSync(opts.out, res.bytes);
      const m = res.manifest;
      const p = m.preprocess;
      const byName = new Map(res.inspection.candidates.map((c) => [c.name, c]));
      const lines = [
        `exposed ${file} → ${opts.out}`,
        `  input        ${m.input.name} ${shape(m.input.shape)} NCHW`,
        `  logits       ${m.outputs.logits} (${m.classes.length} classes: ${m.classes.join(', ')})`,
        `  taps         ${res.plan.taps.length}, each → <name>_mean and <name>_std [N, C]:`,
        ...res.plan.taps.map((t) => `                 ${t.mean.replace(/_mean$/, '').padEnd(28)} ${String(t.channels).padStart(4)} ch  ${byName.get(t.tensor)?.shape?.slice(2).join('x') ?? ''}  (${t.tensor})`),
        ...(res.plan.penultimate ? [`  penultimate  ${res.plan.penultimate.output} [N, ${res.plan.penultimate.dim}] from ${res.plan.penultimate.source.tensor}${res.plan.penultimate.source.pool ? ' (pooled)' : ''}`] : ['  penultimate  none found (KD and MGM will be left out of `warden fit`)']),
        `  preprocess   window ${p.window}, scale [${p.scale.join(', ')}], mean [${p.mean.join(', ')}], std [${p.std.join(', ')}], MONOCHROME1 ${p.invertMonochrome1 ? 'inverted' : 'as is'}, resize ${p.resize}`,
        `  proof        original output(s) ${res.proof.outputs.join(', ')} bit-identical on ${res.proof.images} probe images (${res.proof.runs} runs, batch ${res.proof.batchSizes.join(' and ')})`,
        `  wrote        ${opts.out} (${(res.bytes.length / 1e6).toFixed(2)} MB, sha256 ${res.sha256.slice(0, 12)}…; the sealed model is unchanged)`,
        `next: warden fit --model ${opts.out} --from <folder of clean DICOM studies> --out <bundle>`,
      ];
      process.stdout.write(lines.join('\n') + '\n');
    });
}
