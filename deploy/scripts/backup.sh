#!/usr/bin/env bash
# Back up config.yaml, .env, logs/, data/ (SQLite journal copied consistently) and the Redis dump
# into BACKUP_DIR/perpbot-backup-<UTC timestamp>.tar.gz. Run before every upgrade.
# Env: BACKUP_DIR (default <repo>/backups), PERPBOT_ROOT (default the repo), REDIS_URL (optional),
#      REDIS_DUMP (path of dump.rdb / appendonly dir readable here, optional).
set -euo pipefail

ROOT="${PERPBOT_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
BACKUP_DIR="${BACKUP_DIR:-$ROOT/backups}"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
NAME="perpbot-backup-$STAMP"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
STAGE="$WORK/$NAME"
mkdir -p "$STAGE" "$BACKUP_DIR"

log() { echo "backup: $*"; }

for file in config.yaml .env; do
  if [[ -f "$ROOT/$file" ]]; then
    cp -p "$ROOT/$file" "$STAGE/$file"
    log "saved $file"
  else
    log "no $file (skipped)"
  fi
done

if [[ -d "$ROOT/logs" ]]; then
  cp -rp "$ROOT/logs" "$STAGE/logs"
  log "saved logs/"
fi

# data/: SQLite files are copied with the online backup API so a running bot cannot tear them.
if [[ -d "$ROOT/data" ]]; then
  mkdir -p "$STAGE/data"
  while IFS= read -r -d '' path; do
    rel="${path#"$ROOT/data/"}"
    mkdir -p "$STAGE/data/$(dirname "$rel")"
    case "$path" in
      *-wal|*-shm|*-journal) continue ;;
    esac
    if head -c 16 "$path" 2>/dev/null | grep -q "SQLite format 3"; then
      python3 - "$path" "$STAGE/data/$rel" <<'PY'
import sqlite3, sys
src = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
dst = sqlite3.connect(sys.argv[2])
with dst:
    src.backup(dst)
dst.close()
src.close()
PY
      log "saved SQLite data/$rel (online backup)"
    else
      cp -p "$path" "$STAGE/data/$rel"
    fi
  done < <(find "$ROOT/data" -type f -print0)
  log "saved data/"
fi

# Redis: ask for a fresh snapshot when reachable, then copy the dump if it is readable from here.
if [[ -n "${REDIS_URL:-}" ]] && command -v redis-cli >/dev/null 2>&1; then
  if redis-cli -u "$REDIS_URL" ping >/dev/null 2>&1; then
    before="$(redis-cli -u "$REDIS_URL" LASTSAVE)"
    redis-cli -u "$REDIS_URL" BGSAVE >/dev/null 2>&1 || true
    for _ in $(seq 1 60); do
      [[ "$(redis-cli -u "$REDIS_URL" LASTSAVE)" != "$before" ]] && break
      sleep 0.5
    done
    dir="$(redis-cli -u "$REDIS_URL" CONFIG GET dir | sed -n 2p)"
    dbfile="$(redis-cli -u "$REDIS_URL" CONFIG GET dbfilename | sed -n 2p)"
    dump="${REDIS_DUMP:-$dir/$dbfile}"
    if [[ -f "$dump" ]]; then
      mkdir -p "$STAGE/redis"
      cp -p "$dump" "$STAGE/redis/$(basename "$dump")"
      log "saved Redis snapshot $(basename "$dump")"
    else
      log "Redis BGSAVE done, dump $dump not readable from here (in Docker it is in volume perpbot_redis-data)"
    fi
  else
    log "Redis at REDIS_URL not reachable (skipped)"
  fi
fi

ARCHIVE="$BACKUP_DIR/$NAME.tar.gz"
tar -C "$WORK" -czf "$ARCHIVE" "$NAME"
chmod 600 "$ARCHIVE"  # holds .env secrets
log "archive $ARCHIVE"
echo "$ARCHIVE"
