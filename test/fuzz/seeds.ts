import * as fs from 'node:fs';
import * as path from 'node:path';
import { CORPUS_DIR, corpusFiles } from '../helpers/corpus';
import { LAB_DIR } from '../helpers/lab-fixtures';

/**
 * The seed files the mutations start from: the shared DICOM corpus (../shared/corpus/dicom) and the committed lab
 * fixtures (test/fixtures/lab), in a fixed order so that (seed, case index) names the same case on every machine
 * with the same corpus.
 */
export interface SeedFile {
  /** `corpus/<path in the shared corpus>` or the path in the repository (test/fixtures/lab/…). */
  name: string;
  bytes: Buffer;
}

const ROOT = path.resolve(__dirname, '..', '..');

function labFiles(): string[] {
  const out: string[] = [];
  const walkDir = (dir: string): void => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walkDir(p);
      else if (e.name.endsWith('.dcm')) out.push(p);
    }
  };
  if (fs.existsSync(LAB_DIR)) walkDir(LAB_DIR);
  return out;
}

let cache: SeedFile[] | null = null;

/** Every seed file (shared corpus, then lab fixtures). */
export function seedFiles(): SeedFile[] {
  cache ??= [
    ...corpusFiles().map((p) => ({ name: `corpus/${path.relative(CORPUS_DIR, p)}`, bytes: fs.readFileSync(p) })),
    ...labFiles().map((p) => ({ name: path.relative(ROOT, p), bytes: fs.readFileSync(p) })),
  ];
  return cache;
}

/** Seeds small enough to send many times per second through the gateway. */
export function smallSeedFiles(maxBytes = 600 * 1024): SeedFile[] {
  return seedFiles().filter((s) => s.bytes.length <= maxBytes);
}
