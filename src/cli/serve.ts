import type { Command } from 'commander';
import { loadConfig } from '../config';
import { startServer } from '../proxy';

/** `warden serve [--config file]`: the gateway. SIGTERM/SIGINT finish in-flight requests, then exit. */
export function register(program: Command): void {
  program
    .command('serve')
    .description('Run the DICOMweb gateway (STOW-RS scanned; QIDO-RS/WADO-RS passed through)')
    .option('-c, --config <file>', 'YAML configuration (default: $WARDEN_CONFIG; env WARDEN_* overrides keys)')
    .option('-p, --port <port>', 'listen port (overrides server.port)')
    .option('-u, --upstream <url>', 'upstream DICOMweb base URL (overrides upstream.url)')
    .option('--model <file>', 'ONNX model with a Warden manifest (overrides model.path)')
    .option('--bundle <file>', 'detector bundle fitted for that model (overrides model.bundle)')
    .action(async (opts: { config?: string; port?: string; upstream?: string; model?: string; bundle?: string }) => {
      const env = { ...process.env };
      if (opts.port !== undefined) env.WARDEN_PORT = opts.port;
      if (opts.upstream !== undefined) env.WARDEN_UPSTREAM_URL = opts.upstream;
      if (opts.model !== undefined) env.WARDEN_MODEL_PATH = opts.model;
      if (opts.bundle !== undefined) env.WARDEN_BUNDLE_PATH = opts.bundle;
      const config = loadConfig(opts.config, env);
      const running = await startServer(config, { reloadConfig: () => loadConfig(opts.config, env) });
      // SIGHUP: reload the bundle and policy without dropping requests (the old ones stay when the new ones are refused)
      process.on('SIGHUP', () => {
        running.reload().catch(() => { /* logged as reload_refused; the runtime in use stays */ });
      });
      const stop = (signal: string): void => {
        running.deps.logger.info({ event: 'signal', signal }, `received ${signal}`);
        running.close().then(() => process.exit(0), () => process.exit(1));
      };
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
      await new Promise<void>(() => { /* runs until a signal */ });
    });
}
