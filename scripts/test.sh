#!/usr/bin/env bash
# Sets up everything the test suite needs on a fresh Debian machine and runs it:
# the real servers the tests talk to (redis-server, prometheus, alertmanager's amtool, shellcheck),
# a C compiler for the optional C accelerators (perpbot/book/_levels.c, perpbot/venues/okx/_books.c, perpbot/scanner/_tops.c),
# from Debian's packages, a virtualenv with perpbot and its test extras, then mypy and pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pair in redis-server:redis-server prometheus:prometheus promtool:prometheus amtool:prometheus-alertmanager shellcheck:shellcheck cc:gcc; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${need[@]}"
fi

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test,ops]'
# The venv's console scripts (docker-compose, hadolint, lint-imports) are what the ops tests run:
# on PATH as in an activated venv, so nothing installed outside the repo is needed or used.
export PATH="$PWD/.venv/bin:$PATH"
# Type check first (configuration: [tool.mypy] in pyproject.toml); any error fails the run.
.venv/bin/python -m mypy perpbot strategies
exec .venv/bin/python -m pytest -q "$@"
