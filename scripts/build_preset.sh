# Sourced by the study and benchmark scripts from the repository root:
#   source scripts/build_preset.sh TARGET...
# installs the Debian packages (scripts/setup.sh), configures $MOE_PRESET (default: default, in
# build/; cpu: build-cpu/), builds the targets, sets $build (the build folder) and $bin (its
# programs, absolute), and sources scripts/mpi_env.sh.
bash scripts/setup.sh
preset=${MOE_PRESET:-default}
build=build
[[ $preset == default ]] || build=build-$preset
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" --target "$@" >/dev/null
bin=$PWD/$build/bin
source scripts/mpi_env.sh
