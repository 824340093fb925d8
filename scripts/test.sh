#!/usr/bin/env bash
# The README's test command: installs everything the tests need on a fresh Debian 12 machine, builds, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --with-orthanc --with-postgres --with-chromium --with-promtool --with-nginx --with-helm --with-lab-python
node scripts/run-tests.js "$@"
