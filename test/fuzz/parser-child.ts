/**
 * The parser target's worker process (forked by ./parser-target.ts, one case at a time over IPC): a crash or a
 * hang here takes down only this process, and the parent records it against the case it was running.
 */
import { parserCase, runParserCase } from './parser-cases';

type Request = { type: 'run'; seed: number; index: number };

process.on('message', (msg: Request) => {
  if (msg?.type !== 'run') return;
  const c = parserCase(msg.seed, msg.index);
  process.send!({ type: 'start', index: c.index, file: c.file, ops: c.ops, bytes: c.bytes.length });
  const t0 = performance.now();
  runParserCase(c).then(
    (r) => process.send!({ type: 'done', index: c.index, ms: performance.now() - t0, ...r }),
    (err: unknown) => process.send!({ type: 'done', index: c.index, ms: performance.now() - t0, outcome: 'harness-error', finding: { kind: 'untyped-throw', detail: String(err) } }),
  );
});
process.send!({ type: 'ready' });
