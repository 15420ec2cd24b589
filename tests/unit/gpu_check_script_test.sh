#!/usr/bin/env bash
# scripts/gpu_check.sh on a machine without a GPU: one line saying so, exit 77 (skipped, never 0),
# and a summary that says nothing was verified. Two machines without a GPU: no nvidia-smi at all,
# and a driverless one whose nvidia-smi prints its complaint on stdout and exits 9.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cat >"$scratch/fake-nvidia-smi" <<'SH'
#!/bin/sh
echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
exit 9
SH
chmod +x "$scratch/fake-nvidia-smi"

status=0
for smi in "$scratch/no-such-nvidia-smi" "$scratch/fake-nvidia-smi"; do
  out=$scratch/out-$(basename "$smi")
  text=$(MOE_NVIDIA_SMI=$smi bash "$root/scripts/gpu_check.sh" "$out" 2>&1)
  rc=$?
  lines=$(printf '%s\n' "$text" | wc -l)
  if [[ $rc -ne 77 ]]; then echo "FAIL ($smi): exit code $rc, expected 77"; status=1; fi
  if [[ $lines -ne 1 || $text != *"no GPU found"*"nothing was verified"* ]]; then
    echo "FAIL ($smi): expected one line saying no GPU was found and nothing was verified, got:"
    printf '%s\n' "$text"
    status=1
  fi
  if ! grep -q '"verified": false' "$out/summary.json" 2>/dev/null; then
    echo "FAIL ($smi): $out/summary.json does not say \"verified\": false"
    status=1
  fi
  [[ $status -eq 0 ]] && echo "ok ($smi): exit 77, one line: $text"
done
# Without an argument it refuses (usage, exit 2), so a forgotten folder never passes as a check.
bash "$root/scripts/gpu_check.sh" >/dev/null 2>&1
rc=$?
if [[ $rc -ne 2 ]]; then echo "FAIL: no argument gave exit $rc, expected 2"; status=1; fi
exit $status
