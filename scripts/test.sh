#!/usr/bin/env bash
# The test command of the README: installs what is missing (Debian packages),
# builds, starts throwaway servers, runs every test on the plain build and then
# on the checked builds (AddressSanitizer+UBSan, Valgrind), stops the servers.
# Exits non-zero if anything failed or a server could not start.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
make -j2 all
make test
if [[ "${DBPOOL_SKIP_CHECKED:-}" != 1 ]]; then
    make -j2 test-checked
fi
