// Every test process (and the CLI and gateway processes the tests spawn, which inherit the environment) keeps
// Warden's state (UID-hash key, audit database, quarantine) in a temporary home of its own, never in the real one.
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

if (!process.env.WARDEN_TEST_HOME) {
  process.env.WARDEN_TEST_HOME = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-test-home-'));
  process.env.HOME = process.env.WARDEN_TEST_HOME;
}
