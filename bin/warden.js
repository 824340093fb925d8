#!/usr/bin/env node
'use strict';
const path = require('node:path');
const fs = require('node:fs');
const entry = path.join(__dirname, '..', 'dist', 'cli', 'index.js');
if (!fs.existsSync(entry)) {
  console.error('warden: not built yet; run `bash scripts/setup.sh` (or `npx tsc`) first');
  process.exit(2);
}
require(entry).main(process.argv).catch((err) => {
  console.error(`warden: ${err && err.message ? err.message : String(err)}`);
  process.exit(2);
});
