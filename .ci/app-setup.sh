#!/usr/bin/env bash
# The app's browser test (tests/test_app_browser.py) drives Debian's headless Chromium through its chromedriver.
# Installs both from Debian's repositories when missing (idempotent: a second run installs nothing). Nothing
# downloads a browser build at run time: the test passes the driver's path to Selenium.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  echo "chromium and chromedriver already installed: $(chromium --version 2>/dev/null | head -n 1)"
  exit 0
fi
sudo_if_needed=()
if [ "$(id -u)" -ne 0 ]; then
  sudo_if_needed=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_if_needed[@]}" apt-get update -q
"${sudo_if_needed[@]}" apt-get install -y -q --no-install-recommends chromium chromium-driver
chromium --version 2>/dev/null | head -n 1
chromedriver --version
