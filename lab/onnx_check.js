// Run an ONNX model with onnxruntime-node on raw inputs; used by the lab to verify ONNX numerics.
// usage (run from the repo root so onnxruntime-node resolves):
//   node lab/onnx_check.js <model.onnx> <input.raw> <N> <outdir> [--u8] [--batch 64]
// input.raw: N x C x H x W float32 little-endian (or uint8 with --u8, divided by 255 like the TS pipeline).
// Writes <outdir>/<output>.f32 (float32 LE) for every model output and <outdir>/shapes.json.
'use strict';
const fs = require('fs');
const path = require('path');
const ort = require('onnxruntime-node');

async function main() {
  const args = process.argv.slice(2);
  const [modelPath, inPath, nStr, outDir] = args;
  const u8 = args.includes('--u8');
  const bi = args.indexOf('--batch');
  const batch = bi >= 0 ? parseInt(args[bi + 1], 10) : 64;
  const n = parseInt(nStr, 10);
  const sess = await ort.InferenceSession.create(modelPath, { intraOpNumThreads: 2 });
  const inName = sess.inputNames[0];
  const buf = fs.readFileSync(inPath);
  const per = buf.length / (u8 ? 1 : 4) / n;
  const c = Math.round(per / (224 * 224));
  const all = {};
  const shapes = {};
  for (let i = 0; i < n; i += batch) {
    const b = Math.min(batch, n - i);
    const data = new Float32Array(b * per);
    if (u8) {
      for (let k = 0; k < b * per; k++) data[k] = buf[i * per + k] / 255;
    } else {
      const src = new Float32Array(buf.buffer, buf.byteOffset + i * per * 4, b * per);
      data.set(src);
    }
    const res = await sess.run({ [inName]: new ort.Tensor('float32', data, [b, c, 224, 224]) });
    for (const name of sess.outputNames) {
      (all[name] = all[name] || []).push(Float32Array.from(res[name].data));
      shapes[name] = [n, ...res[name].dims.slice(1)];
    }
  }
  fs.mkdirSync(outDir, { recursive: true });
  for (const name of Object.keys(all)) {
    const parts = all[name];
    const tot = parts.reduce((s, p) => s + p.length, 0);
    const out = new Float32Array(tot);
    let o = 0;
    for (const p of parts) { out.set(p, o); o += p.length; }
    fs.writeFileSync(path.join(outDir, name + '.f32'), Buffer.from(out.buffer));
  }
  fs.writeFileSync(path.join(outDir, 'shapes.json'), JSON.stringify(shapes));
  console.log(`onnx_check: ${n} inputs, outputs ${sess.outputNames.join(',')}`);
}
main().catch((e) => { console.error(e); process.exit(1); });
