#!/usr/bin/env bash
# Builds and runs one libFuzzer target for SECONDS seconds (default 600) on JOBS cores (default 1;
# more than one runs libFuzzer's fork mode, JOBS processes sharing the corpus):
#   scripts/fuzz.sh TARGET [SECONDS] [JOBS]    TARGET: safetensors hf_config run_file checkpoint_attrs token_file
# Seeds come from fuzz/corpus/TARGET/ (in the repository); what the run learns goes to
# build-fuzz/corpus/TARGET/ and crashes, leaks and timeouts to build-fuzz/artifacts/TARGET/.
# Exit code 0: no finding. A unit may take 60 s (wall time: the machine may be shared). Needs Debian's clang and libclang-rt (installed here when missing).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
targets="safetensors hf_config run_file checkpoint_attrs token_file"
target=${1:?"usage: scripts/fuzz.sh TARGET [SECONDS]  (TARGET: $targets)"}
seconds=${2:-600}
jobs=${3:-1}
[[ $jobs =~ ^[1-9][0-9]*$ ]] || { echo "fuzz.sh: JOBS must be a positive integer, not '$jobs'" >&2; exit 2; }
[[ " $targets " == *" $target "* ]] || { echo "fuzz.sh: unknown target '$target' (valid: $targets)" >&2; exit 2; }

bash scripts/setup.sh
if ! command -v clang++ >/dev/null || ! ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends clang libclang-rt-dev libomp-dev >/dev/null
fi
[[ -f build-fuzz/CMakeCache.txt ]] || cmake --preset fuzz >/dev/null
cmake --build build-fuzz -j"${FUZZ_BUILD_JOBS:-2}" --target "${target}_fuzz"

corpus=build-fuzz/corpus/$target
artifacts=build-fuzz/artifacts/$target
mkdir -p "$corpus" "$artifacts"
# MPI_Init (token_file) leaves allocations libFuzzer's leak check must not count.
export LSAN_OPTIONS="suppressions=$PWD/scripts/lsan.supp:print_suppressions=0"
# token_file calls MPI_Init: MPI's never-freed start-up allocations come from libraries built
# without frame pointers, which only full unwinding names (so that lsan.supp suppresses them; with
# fast unwinding a fork-mode job's exit reported one as a leak from an unknown module).
[[ $target == token_file ]] && export ASAN_OPTIONS="fast_unwind_on_malloc=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
# Keep MPI's components loaded at exit, so that LeakSanitizer can name (and lsan.supp suppress) them.
export OMPI_MCA_mca_component_disable_dlclose=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
start=$(date +%s)
status=0
fork=()
((jobs > 1)) && fork=(-fork="$jobs")
"build-fuzz/bin/${target}_fuzz" "$corpus" "fuzz/corpus/$target" "${fork[@]}" -max_total_time="$seconds" -timeout=60 \
  -rss_limit_mb=2048 -malloc_limit_mb=2048 -max_len=65536 -artifact_prefix="$artifacts/" -print_final_stats=1 \
  2>"build-fuzz/$target.log" || status=$?
echo "fuzz.sh: $target ran $(($(date +%s) - start)) s on $jobs job(s), exit $status ($(grep -c . "$corpus"/* 2>/dev/null | wc -l) corpus files; log build-fuzz/$target.log)"
tail -n 15 "build-fuzz/$target.log" | grep -E "ERROR|SUMMARY|stat::|Done" || true
exit "$status"
