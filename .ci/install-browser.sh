#!/usr/bin/env bash
# What tests/test_browser.py needs: Debian's chromium and the Python playwright client.
# The client drives the system chromium through executable_path; `playwright install` is never run,
# it downloads browsers from a CDN that CI machines may not reach.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV_PY="${VENV_PY:-.venv/bin/python}"
if ! command -v chromium >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo"
    if command -v apt-get >/dev/null 2>&1; then
        $SUDO apt-get update -qq || true
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium \
            || echo "install-browser: chromium could not be installed; the browser test will be skipped" >&2
    else
        echo "install-browser: no apt-get here; install chromium yourself or the browser test is skipped" >&2
    fi
fi
# playwright is one of mmrag's test extras, so `make test` (make setup) installs it into .venv itself;
# here it is only added to a .venv that exists already
if [ ! -x "$VENV_PY" ]; then
    echo "install-browser: no $VENV_PY yet: \`make test\` creates it and installs playwright with the test extras" >&2
elif ! "$VENV_PY" -c "import playwright" >/dev/null 2>&1; then
    "$VENV_PY" -m pip install -q 'playwright>=1.45' \
        || echo "install-browser: pip could not install playwright into $VENV_PY; \`make test\` installs it with the test extras" >&2
fi
command -v chromium >/dev/null 2>&1 && echo "install-browser: chromium ready at $(command -v chromium)" >&2 || true
