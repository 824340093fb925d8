import { fork, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';

/**
 * Forks one of the fuzzer's TypeScript entry points (./parser-child.ts, ./gateway-child.ts) as its own Node process,
 * run through tsx, with an IPC channel; its stderr is kept (the last 4 KB) to explain a crash.
 */
export interface FuzzChild {
  proc: ChildProcess;
  stderrTail(): string;
  /** Resolves with (code, signal) once the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGKILL by PID (idempotent). */
  kill(): void;
}

const TSX_CJS = path.resolve(__dirname, '..', '..', 'node_modules', 'tsx', 'dist', 'cjs', 'index.cjs');

export function forkTs(entry: string, env: Record<string, string> = {}, nodeArgs: string[] = []): FuzzChild {
  const proc = fork(path.join(__dirname, entry), [], {
    execArgv: ['--require', TSX_CJS, ...nodeArgs],
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    env: { ...process.env, ...env },
    serialization: 'advanced',
  });
  let tail = '';
  proc.stderr!.on('data', (d: Buffer) => { tail = (tail + d.toString('utf8')).slice(-4096); });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    if (proc.exitCode !== null || proc.signalCode !== null) resolve({ code: proc.exitCode, signal: proc.signalCode });
    else proc.once('exit', (code, signal) => resolve({ code, signal }));
  });
  return {
    proc,
    stderrTail: () => tail,
    exited,
    kill() {
      if (proc.exitCode === null && proc.signalCode === null && proc.pid) {
        try { process.kill(proc.pid, 'SIGKILL'); } catch { /* already gone */ }
      }
    },
  };
}

/** The next IPC message that satisfies `pred`, or null when the process exits first. */
export function nextMessage<T>(child: FuzzChild, pred: (m: unknown) => m is T): Promise<T | null> {
  return new Promise((resolve) => {
    const onMessage = (m: unknown): void => { if (pred(m)) { cleanup(); resolve(m); } };
    const onExit = (): void => { cleanup(); resolve(null); };
    const cleanup = (): void => { child.proc.off('message', onMessage); child.proc.off('exit', onExit); };
    child.proc.on('message', onMessage);
    child.proc.once('exit', onExit);
    if (child.proc.exitCode !== null || child.proc.signalCode !== null) onExit();
  });
}
