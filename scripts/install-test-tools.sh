#!/usr/bin/env bash
# scripts/install-test-tools.sh: installs what the test suite drives besides Rust:
# Debian's chromium (the admin page test renders the page in it). Python's packages
# for the Python client are installed by examples/clients/python/setup.sh, which the
# test itself runs. Prints what it did; exits 0 when chromium is there afterwards.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
  echo "chromium: $(chromium --version 2>/dev/null || echo present)"
  exit 0
fi
sudo=()
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo=(sudo -n)
  else
    echo "install-test-tools: chromium is missing and this user cannot install packages" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
if ! "${sudo[@]}" apt-get install -y -q chromium >/dev/null 2>&1; then
  "${sudo[@]}" apt-get update -q >/dev/null
  "${sudo[@]}" apt-get install -y -q chromium >/dev/null
fi
echo "chromium: $(chromium --version 2>/dev/null || echo installed)"
