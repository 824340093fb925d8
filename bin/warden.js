#!/usr/bin/env node
'use strict';
const path = require('node:path');
const fs = require('node:fs');
const { spawn } = require('node:child_process');

const entry = path.join(__dirname, '..', 'dist', 'cli', 'index.js');
if (!fs.existsSync(entry)) {
  console.error('warden: not built yet; run `bash scripts/setup.sh` (or `npx tsc`) first');
  process.exit(2);
}

// `warden serve` streams large studies; glibc only returns big freed buffers to the OS when they come from mmap,
// so without these the RSS creeps up with study size (measured: docs/performance.md, bench:memory). glibc reads
// them at process start, hence one re-exec. A value already set (even empty) is respected.
const MALLOC_DEFAULTS = { MALLOC_MMAP_THRESHOLD_: '131072', MALLOC_ARENA_MAX: '2' };
if (process.argv[2] === 'serve' && process.platform === 'linux' && !process.env.WARDEN_MALLOC_SET
    && Object.keys(MALLOC_DEFAULTS).some((k) => process.env[k] === undefined)) {
  const env = { ...process.env, WARDEN_MALLOC_SET: '1' };
  for (const [k, v] of Object.entries(MALLOC_DEFAULTS)) if (env[k] === undefined) env[k] = v;
  const child = spawn(process.execPath, [...process.execArgv, __filename, ...process.argv.slice(2)], { env, stdio: 'inherit' });
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(signal, () => child.kill(signal));
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 128 : 1)));
  return;
}
require(entry).main(process.argv).catch((err) => {
  console.error(`warden: ${err && err.message ? err.message : String(err)}`);
  process.exit(2);
});
