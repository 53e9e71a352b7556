#!/usr/bin/env bash
# Sets up (launch/setup.sh --test-deps: packages, .venv with torch and the HF oracles, Release build) and runs
# every test with CTest: unit, parity (against transformers / peft / tokenizers), MPI (mpiexec -n 2 and 4)
# and cuda (skipped without a GPU). This is the command CI runs (.ci/run).
#
#   bash launch/test.sh                 # everything
#   bash launch/test.sh -L mpi          # extra arguments go to ctest (-R regex, -L label, -E exclude ...)
#
# Reference data: ../shared/data beside the checkout, or $HSLOTH_TESTDATA; tests that need it skip without it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
T0=$(date +%s)
bash launch/setup.sh --test-deps
BUILD_DIR=${HS_BUILD_DIR:-build}
printf '\n== running tests (ctest)\n'
# Open MPI as root in containers, and more ranks than cores on small machines.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
rc=0
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "${HS_TEST_JOBS:-$(nproc)}" "$@" || rc=$?
echo "test.sh: setup + tests took $(( $(date +%s) - T0 ))s"
exit $rc
