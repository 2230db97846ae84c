# Shared by scripts/run-demo and scripts/test. Creates .venv with Python >= 3.11.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

APT_UPDATED=0
apt_install() {
  # Install the Debian packages given whose command/file is missing.
  local missing=()
  while [ $# -gt 0 ]; do
    local pkg="$1" probe="$2"; shift 2
    if ! command -v "$probe" >/dev/null 2>&1 && [ ! -e "$probe" ]; then missing+=("$pkg"); fi
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "missing: ${missing[*]} — install them with your package manager" >&2; return 1
  fi
  echo "==> apt-get install ${missing[*]}"
  if [ "$APT_UPDATED" = 0 ]; then as_root apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
}

PYTHON="${PYTHON:-python3}"
ensure_venv() {
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "Centrale needs Python >= 3.11 (found $("$PYTHON" --version 2>&1))" >&2; exit 1; }
  if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv 2>/dev/null || {
      apt_install python3-venv /usr/share/doc/python3-venv; rm -rf .venv; "$PYTHON" -m venv .venv; }
  fi
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1
  .venv/bin/python -m pip install -q -e ".$1" 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import centrale" # fail loudly if the install did not work
}
