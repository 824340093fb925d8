#!/usr/bin/env node
// Runs jest and ends with the one line CI reads: "N passed, N failed".
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const outFile = path.join(os.tmpdir(), `warden-jest-${process.pid}.json`);
const args = [require.resolve('jest/bin/jest'), '--json', `--outputFile=${outFile}`, ...process.argv.slice(2)];
const res = spawnSync(process.execPath, args, { stdio: 'inherit', cwd: path.resolve(__dirname, '..') });
let passed = 0;
let failed = 0;
let skipped = 0;
let suitesFailed = 0;
try {
  const report = JSON.parse(fs.readFileSync(outFile, 'utf8'));
  passed = report.numPassedTests;
  failed = report.numFailedTests;
  skipped = report.numPendingTests + (report.numTodoTests || 0);
  // A suite that fails to compile or crashes in beforeAll has no failed tests of its own: count it.
  suitesFailed = report.testResults.filter((r) => r.status === 'failed' && r.assertionResults.every((a) => a.status !== 'failed')).length;
  fs.unlinkSync(outFile);
} catch (err) {
  console.error(`could not read jest's report: ${err.message}`);
  failed += 1;
}
failed += suitesFailed;
// the temporary homes test/setup-env.js gave each test process (their audit databases, quarantines, keys)
for (const name of fs.readdirSync(os.tmpdir())) {
  if (name.startsWith('warden-test-home-')) fs.rmSync(path.join(os.tmpdir(), name), { recursive: true, force: true });
}
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(res.status === 0 && failed === 0 ? 0 : 1);
