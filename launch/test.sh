#!/usr/bin/env bash
# Runs every vdp test: unit tests, command-line tests, multi-rank tests under mpirun, and the
# reference tests against PyTorch. Sets up and builds first (launch/setup.sh, idempotent).
#   launch/test.sh [ctest arguments...]     e.g. launch/test.sh -R Plan
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$repo/launch/setup.sh"
build=${VDP_BUILD_DIR:-$repo/build}
# Multi-rank tests oversubscribe this machine's cores; Open MPI refuses root without these.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
echo "[vdp test] running the test suite in $build"
cd "$build"
set +e
ctest --output-on-failure -j "${VDP_TEST_JOBS:-2}" "$@"
rc=$?
# CTest lists a skipped test without its reason; each test prints it as a "SKIP: ..." line.
awk '/^[0-9]+\/[0-9]+ Testing: / { name = $3 }
     /^SKIP: / { sub(/^SKIP: /, ""); print "[vdp test] " name " skipped: " $0 }' Testing/Temporary/LastTest.log 2>/dev/null
exit $rc
