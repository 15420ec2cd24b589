#!/usr/bin/env bash
# Sets up (if needed), builds and runs the whole test suite. Extra arguments go to ctest,
# e.g. `scripts/test.sh -L unit` or `scripts/test.sh -R score`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh
cmake --preset default >/dev/null
cmake --build --preset default

# MPI as root and more ranks than cores (see docs/architecture.md, "Running here").
source scripts/mpi_env.sh
ctest --test-dir build --output-on-failure --timeout 900 -j2 "$@"
