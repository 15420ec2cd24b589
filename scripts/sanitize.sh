#!/usr/bin/env bash
# Builds the `sanitize` preset (ASan + UBSan, build-sanitize/) and runs the unit, integration and
# mpi tests with it; any sanitizer report fails the test that hit it. Extra arguments go to ctest
# (e.g. `scripts/sanitize.sh -R run_config`). Its last full run is recorded in docs/testing.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh
cmake --preset sanitize >/dev/null
cmake --build --preset sanitize
source scripts/mpi_env.sh
# halt_on_error + exitcode: a report ends the program with a failure the test sees. Leaks in
# MPI's libraries are only recognised with full unwinding (they have no frame pointers). Leaks in
# MPI's and HDF5's own start-up are not ours (scripts/lsan.supp).
export ASAN_OPTIONS="fast_unwind_on_malloc=0:halt_on_error=1:detect_leaks=1:abort_on_error=0:exitcode=86:detect_odr_violation=0"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:exitcode=87"
export LSAN_OPTIONS="suppressions=$PWD/scripts/lsan.supp:print_suppressions=0"
export OMPI_MCA_mca_component_disable_dlclose=1  # so that leaks in MPI components are named (lsan.supp)
start=$(date +%s)
status=0
ctest --test-dir build-sanitize --output-on-failure --timeout 1800 -j2 -L "unit|integration|mpi" "$@" || status=$?
echo "sanitize.sh: $(date -u +%FT%TZ), $(($(date +%s) - start)) s, ctest exit $status"
exit "$status"
