#!/usr/bin/env bash
# Sets up (if needed), builds and runs the whole test suite. Extra arguments go to ctest,
# e.g. `scripts/test.sh -L unit` or `scripts/test.sh -R score`. MOE_PRESET=cpu uses the CPU-only
# preset (build-cpu/) instead of the default one (build/, with CUDA when nvcc is found).
# The `slurm` tests need a running Slurm: unless one of scripts/slurm_local.sh's runs already, this
# script starts it before ctest and stops it afterwards, also when a test fails or on Ctrl-C.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh
preset=${MOE_PRESET:-default}
build=build
[[ $preset == default ]] || build=build-$preset
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset"

# MPI as root and more ranks than cores (see docs/architecture.md, "Running here").
source scripts/mpi_env.sh

if ctest --test-dir "$build" -N -L slurm | grep -q "Total Tests: [1-9]" && ! bash scripts/slurm_local.sh status >/dev/null; then
  bash scripts/slurm_local.sh start
  trap 'bash scripts/slurm_local.sh stop' EXIT
  trap 'exit 130' INT TERM
fi
ctest --test-dir "$build" --output-on-failure --timeout 900 -j2 "$@"
