# Shared settings for the ci/ scripts. Source it; do not run it.
# Everything downloaded or built lives in one cache outside the repository, so a second
# run is fast and the work tree stays clean.
set -euo pipefail

DEVMODEL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DEVMODEL_CACHE="${DEVMODEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/devmodel}"
export DEVMODEL_ROOT DEVMODEL_CACHE
mkdir -p "$DEVMODEL_CACHE"

log() { printf '[%s] %s\n' "$(basename "$0")" "$*" >&2; }
die() { log "error: $*"; exit 1; }
