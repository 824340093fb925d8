/**
 * The gateway target's Warden: `startServer` in its own process (a crash ends this process, not the fuzzer), with
 * the real scan pipeline on the tiny test model (decode → preprocess → ONNX inference in a worker → a fuzz bundle
 * whose p-values spread over forward, flag and block) or, with FUZZ_SCANNER=fake, the proxy tests' fake scanner.
 * Over IPC it answers `state` with the gateway's in-flight counters and its spool directory's contents.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { createLogger } from '../../src/core/logger';
import { validateConfig } from '../../src/config';
import { compose, runtimeOptionsFromConfig } from '../../src/pipeline';
import { startServer, type RunningServer, type Scanner } from '../../src/proxy';
import type { DetectorBundle } from '../../src/detectors';
import { FakeScanner } from '../helpers/fake-scanner';
import { writeTestModel } from '../fixtures/onnx/build-test-model';
import { FUZZ_TOKEN, type GatewayState } from './gateway-protocol';


/** A bundle for the test model whose p-value is a fixed function of the features: a third block, a third flag. */
function fuzzBundle(modelSha256: string): DetectorBundle {
  return {
    names: ['uad'],
    requiredLayers: ['penultimate'],
    modelSha256,
    score(features) {
      const f = features.penultimate;
      let s = 0;
      for (let i = 0; i < f.length; i++) s += f[i] * (i + 1);
      const p = Math.min(0.999, Math.max(0.001, Math.abs(Math.sin(s * 1000))));
      return { uad: { score: 1 - p, pValue: p, signal: 'adversarial' } };
    },
  };
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-fuzz-gw-'));
  const upstreamUrl = process.env.FUZZ_UPSTREAM_URL!;
  const config = validateConfig({
    upstream: { url: upstreamUrl, timeoutMs: 800 },
    server: { port: 0, host: '127.0.0.1', stateDir: path.join(dir, 'state'), shutdownGraceMs: 2000, requestTimeoutMs: 30000, headersTimeoutMs: 10000 },
    auth: { dicomwebToken: FUZZ_TOKEN },
    limits: {
      maxBodyBytes: 6 * 1024 * 1024, maxInstanceBytes: 3 * 1024 * 1024, memoryPartBytes: 64 * 1024, memoryBudgetBytes: 1024 * 1024,
      maxConcurrentScans: 2, maxConcurrentStowRequests: 4, maxQueuedScans: 16, scanTimeoutMs: 10000, bodyIdleTimeoutMs: 500, retryAfterSeconds: 2,
    },
    policy: { applicability: { modalities: [], photometric: [] }, adversarial: { flagFpr: 0.6, blockFpr: 0.3 } },
    model: { workers: 1, threadsPerWorker: 1 },
    wado: { scan: true },
    stow: { spoolDir: path.join(dir, 'spool') },
    logging: { level: 'silent' },
  });
  const logger = createLogger(process.env.FUZZ_LOG_LEVEL ?? 'silent');
  let scanner: Scanner;
  let closeScanner = async (): Promise<void> => {};
  if (process.env.FUZZ_SCANNER === 'fake') {
    scanner = new FakeScanner({}, config.policy);
  } else {
    const modelPath = writeTestModel(dir, 'fuzz.onnx');
    const sha = createHash('sha256').update(fs.readFileSync(modelPath)).digest('hex');
    const runtime = await compose({ ...runtimeOptionsFromConfig(config), modelPath, bundle: fuzzBundle(sha), logger });
    scanner = runtime.pipeline;
    closeScanner = () => runtime.close();
  }
  const w: RunningServer = await startServer(config, { scanner, logger });
  const ctx = w.wardenApp.ctx;
  const state = (): GatewayState => ({
    activeStow: ctx.activeStow,
    activeWado: ctx.activeWado,
    scansActive: ctx.scans.active,
    scansWaiting: ctx.scans.waiting,
    budgetUsed: ctx.budget.used,
    inflight: { ...ctx.inflight },
    spoolFiles: fs.existsSync(w.deps.spoolDir) ? fs.readdirSync(w.deps.spoolDir) : ['(spool directory missing)'],
  });
  process.on('message', (msg: { type: string; id?: number }) => {
    if (msg?.type === 'state') process.send!({ type: 'state', id: msg.id, state: state() });
    if (msg?.type === 'close') {
      void (async () => {
        await w.close();
        await closeScanner();
        fs.rmSync(dir, { recursive: true, force: true });
        process.send!({ type: 'closed' }, () => process.exit(0));
      })();
    }
  });
  process.send!({ type: 'ready', port: w.port, spoolDir: w.deps.spoolDir });
}

main().catch((err: Error) => {
  process.stderr.write(`gateway child failed to start: ${err.stack ?? err.message}\n`);
  process.exit(3);
});
