#!/usr/bin/env bash
# Follow one service's logs: docker compose logs -f when Docker runs the stack, else tail logs/<service>.log.
# Usage: deploy/scripts/logs.sh <service> [lines]     e.g. deploy/scripts/logs.sh perpbot
set -euo pipefail

SERVICE="${1:-}"
LINES="${2:-200}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
COMPOSE_FILE="${COMPOSE_FILE:-$ROOT/deploy/docker-compose.yml}"
LOG_DIR="${PERPBOT_LOG_DIR:-$ROOT/logs}"

if [[ -z "$SERVICE" ]]; then
  echo "usage: $0 <service> [lines]   (services: perpbot redis prometheus alertmanager grafana)" >&2
  exit 2
fi
if ! [[ "$SERVICE" =~ ^[A-Za-z0-9_-]+$ ]]; then
  echo "logs.sh: bad service name '$SERVICE'" >&2
  exit 2
fi

# Prefer the compose stack when Docker is reachable and the service runs there.
if [[ "${LOGS_USE_DOCKER:-auto}" != "no" ]] && command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  if docker compose version >/dev/null 2>&1; then
    exec docker compose -f "$COMPOSE_FILE" logs -f --tail "$LINES" "$SERVICE"
  elif command -v docker-compose >/dev/null 2>&1; then
    exec docker-compose -f "$COMPOSE_FILE" logs -f --tail "$LINES" "$SERVICE"
  fi
fi

LOG_FILE="$LOG_DIR/$SERVICE.log"
if [[ ! -f "$LOG_FILE" ]]; then
  echo "logs.sh: no Docker stack and no log file $LOG_FILE" >&2
  exit 1
fi
# -F follows across the bot's log rotation.
exec tail -n "$LINES" -F "$LOG_FILE"
