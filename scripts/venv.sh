# Sourced by run-demo and run-tests: create .venv (Python 3.11+) and install a requirements
# file into it, skipping the install when that file has not changed since the last one.
# Usage: ensure_venv requirements.txt

JUNCTION_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$JUNCTION_ROOT/.venv"

die() {
    echo "error: $*" >&2
    exit 1
}

find_python() {
    local candidate
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 \
            && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

ensure_venv() {
    local requirements="$JUNCTION_ROOT/$1"
    if ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then
        local python
        python="$(find_python)" || die "Junction needs Python 3.11 or newer (python3.11 or python3 on PATH)."
        echo "Creating the virtualenv .venv with $python ($("$python" --version 2>&1))…"
        rm -rf "$VENV"
        "$python" -m venv "$VENV" \
            || die "could not create .venv: install the venv module (e.g. apt-get install python3.11-venv)."
    fi
    # One stamp per requirements file: reinstall only when its content (or an included file) changed.
    local stamp="$VENV/.installed-$(basename "$requirements")"
    local digest
    digest="$(cat "$JUNCTION_ROOT"/requirements*.txt | sha256sum | cut -d' ' -f1)"
    if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$digest" ]]; then
        echo "Installing $(basename "$requirements") into .venv…"
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$requirements" \
            || die "pip could not install $(basename "$requirements")."
        echo "$digest" >"$stamp"
    fi
}
