// Model input tensors through Warden's own decode + preprocess path (dist/, built by `npx tsc`), for images the lab's
// Python cannot decode (JPEG 2000 and friends) or whose windowing the lab wants to check against Warden's.
// usage (from the repo root):
//   node lab/warden_tensors.js --foreign <outdir>          every CR / DX image listed in ../shared/corpus/dicom/*/manifest.csv
//   node lab/warden_tensors.js --files <list.txt> <outdir> DICOM paths, one per line
// Writes <outdir>/<n>.npy (float32, the model's input shape, e.g. 1x1x224x224) and <outdir>/index.json (one entry
// per file: source, tensor, status, window rule applied, modality, photometric, transfer syntax, rows, columns).
'use strict';
const fs = require('fs');
const path = require('path');
const { decodeInstance, isSkipped } = require('../dist/dicom');
const { preprocess, loadModelManifest } = require('../dist/models');
const { parseCsv } = require('../dist/detectors/dataset');

const REPO = path.resolve(__dirname, '..');
const CORPUS = path.join(REPO, '..', 'shared', 'corpus', 'dicom');
const MODEL = path.join(REPO, 'models', 'warden-cxr-ref.onnx');
const RADIOGRAPHY = new Set(['CR', 'DX']);

function foreignList() {
  const out = [];
  for (const dir of fs.readdirSync(CORPUS).sort()) {
    const m = path.join(CORPUS, dir, 'manifest.csv');
    if (!fs.existsSync(m)) continue;
    for (const r of parseCsv(fs.readFileSync(m, 'utf8'))) {
      if (RADIOGRAPHY.has(r.modality)) out.push({ file: path.join(CORPUS, dir, r.file), source: `${dir}/${r.file}`, note: r.note, sha256: r.sha256 });
    }
  }
  return out;
}

function npy(tensor, shape) {
  const header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  const total = 10 + header.length + 1;
  const pad = (64 - (total % 64)) % 64;
  const h = Buffer.from(header + ' '.repeat(pad) + '\n', 'latin1');
  const pre = Buffer.alloc(10);
  pre.write('\x93NUMPY', 0, 'latin1');
  pre[6] = 1; pre[7] = 0;
  pre.writeUInt16LE(h.length, 8);
  return Buffer.concat([pre, h, Buffer.from(tensor.buffer, tensor.byteOffset, tensor.byteLength)]);
}

async function main() {
  const args = process.argv.slice(2);
  let items;
  let outDir;
  if (args[0] === '--foreign') {
    items = foreignList();
    outDir = args[1];
  } else if (args[0] === '--files') {
    items = fs.readFileSync(args[1], 'utf8').split('\n').filter(Boolean).map((f) => ({ file: path.resolve(f), source: f }));
    outDir = args[2];
  } else {
    console.error('usage: node lab/warden_tensors.js --foreign <outdir> | --files <list.txt> <outdir>');
    process.exit(2);
  }
  const { manifest } = await loadModelManifest(MODEL);
  fs.mkdirSync(outDir, { recursive: true });
  const index = [];
  for (let i = 0; i < items.length; i++) {
    const it = items[i];
    const entry = { source: it.source, ...(it.note !== undefined ? { note: it.note, sha256: it.sha256 } : {}) };
    try {
      const decoded = await decodeInstance(new Uint8Array(fs.readFileSync(it.file)));
      if (isSkipped(decoded)) {
        entry.status = 'skipped';
        entry.reason = decoded.reason;
      } else {
        const input = preprocess(decoded, manifest, { frame: 'first' });
        const name = `${String(i).padStart(4, '0')}.npy`;
        fs.writeFileSync(path.join(outDir, name), npy(input.tensor, input.shape));
        Object.assign(entry, {
          status: 'ok', tensor: name, window: input.window, modality: decoded.modality,
          photometric: decoded.photometricInterpretation, transferSyntax: decoded.transferSyntaxUid,
          rows: decoded.rows, columns: decoded.columns, bitsStored: decoded.bitsStored,
        });
      }
    } catch (err) {
      entry.status = 'error';
      entry.error = err && err.code ? err.code : String(err);
    }
    index.push(entry);
  }
  fs.writeFileSync(path.join(outDir, 'index.json'), JSON.stringify(index, null, 1));
  const ok = index.filter((e) => e.status === 'ok').length;
  console.log(`warden_tensors: ${ok} of ${index.length} images -> ${outDir}`);
}

main().catch((e) => { console.error(e); process.exit(1); });
