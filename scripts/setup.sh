#!/usr/bin/env bash
# Installs every Debian package that moebatch's build, tests and scripts need, and the pinned PyPI
# packages of the text tools (scripts/requirements.txt) into .venv/, a virtual environment over
# Debian's python3 that also sees Debian's h5py, numpy and matplotlib.
# Idempotent: when everything is already installed it checks and returns in well under a second.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

packages=(
  build-essential cmake pkg-config git
  libopenmpi-dev openmpi-bin
  libhdf5-openmpi-dev hdf5-tools
  libyaml-cpp-dev libopenblas-dev libopenblas-openmp-dev libdnnl-dev
  libgtest-dev
  libcli11-dev nlohmann-json3-dev libfmt-dev
  python3-h5py python3-numpy python3-venv
  # Slurm jobs, resume tests and scaling studies (scripts/slurm_local.sh, scripts/plot_scaling.py)
  slurm-wlm munge python3-matplotlib
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} > 0)); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  echo "setup: done"
fi

# The virtual environment is (re)made only when requirements.txt changed since it was made; the
# stamp is written last, so an interrupted install is redone.
venv="$root/.venv"
requirements="$root/scripts/requirements.txt"
stamp="$venv/requirements.sha256"
want=$(sha256sum "$requirements" | cut -d' ' -f1)
if [[ ! -x $venv/bin/python || $(cat "$stamp" 2>/dev/null) != "$want" ]]; then
  echo "setup: installing scripts/requirements.txt into .venv/"
  rm -rf "$venv"
  /usr/bin/python3 -m venv --system-site-packages "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements"
  echo "$want" >"$stamp"
fi
