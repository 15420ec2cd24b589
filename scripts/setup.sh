#!/usr/bin/env bash
# Installs every Debian package that moebatch's build, tests and scripts need.
# Idempotent: when everything is already installed it checks and returns in well under a second.
set -euo pipefail

packages=(
  build-essential cmake pkg-config git
  libopenmpi-dev openmpi-bin
  libhdf5-openmpi-dev hdf5-tools
  libyaml-cpp-dev libopenblas-dev libopenblas-openmp-dev libdnnl-dev
  libgtest-dev
  libcli11-dev nlohmann-json3-dev libfmt-dev
  python3-h5py python3-numpy
  # Slurm jobs, resume tests and scaling studies (scripts/slurm_local.sh, scripts/plot_scaling.py)
  slurm-wlm munge python3-matplotlib
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "setup: installing ${missing[*]}"
sudo_cmd=()
[[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
