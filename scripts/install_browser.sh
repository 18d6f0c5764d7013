#!/usr/bin/env bash
# Installs headless Chromium (/usr/bin/chromium, the Debian package) for the viewer's browser test
# (tests marked `browser`: tests/viz/test_viewer.py). Idempotent; runs as root without a tty (CI),
# or through passwordless sudo.
#
#   bash scripts/install_browser.sh
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    echo "install_browser: /usr/bin/chromium is already installed"
    exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo -n)
    else
        echo "install_browser: run as root (apt-get needs it): sudo bash $0" >&2
        exit 1
    fi
fi

${SUDO[@]+"${SUDO[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get update
${SUDO[@]+"${SUDO[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium

if [ ! -x /usr/bin/chromium ]; then
    echo "install_browser: apt-get finished but /usr/bin/chromium is missing" >&2
    exit 1
fi
echo "install_browser: installed $(/usr/bin/chromium --version 2>/dev/null | head -n 1)"
