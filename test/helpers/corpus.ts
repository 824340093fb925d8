import * as fs from 'node:fs';
import * as path from 'node:path';
import { readHeader } from '../../src/dicom';

/** The shared DICOM conformance corpus, referred to relative to the repository (../shared/corpus/dicom). */
export const CORPUS_DIR = path.resolve(__dirname, '..', '..', '..', 'shared', 'corpus', 'dicom');

export function corpusFiles(): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (!/\.(md|csv|txt|json)$/i.test(e.name)) out.push(p);
    }
  };
  if (fs.existsSync(CORPUS_DIR)) walk(CORPUS_DIR);
  return out;
}

/** One Part-10 file with SOP and Study UIDs per transfer syntax (the first in path order). */
export function onePerTransferSyntax(): Array<{ ts: string; file: string; sopInstanceUid: string }> {
  const seen = new Map<string, { ts: string; file: string; sopInstanceUid: string }>();
  const sops = new Set<string>();
  for (const file of corpusFiles()) {
    const id = readHeader(fs.readFileSync(file));
    if (!id?.transferSyntaxUid || !id.sopInstanceUid || !id.studyInstanceUid || seen.has(id.transferSyntaxUid) || sops.has(id.sopInstanceUid)) continue;
    sops.add(id.sopInstanceUid);
    seen.set(id.transferSyntaxUid, { ts: id.transferSyntaxUid, file, sopInstanceUid: id.sopInstanceUid });
  }
  return [...seen.values()];
}
