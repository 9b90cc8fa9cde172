# Sourced by run-demo, run-tests and lock: create .venv (Python 3.11+) and install a lock file
# into it with `pip install --require-hashes` (every package pinned and checked against the
# hashes scripts/lock wrote), skipping the install when no lock file changed since the last one.
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

# `name==version` of each pin in a requirements file, names normalised as pip-compile writes them.
pins() {
    sed -n 's/^\([A-Za-z0-9._-]*\)\(\[[^]]*\]\)\{0,1\} *== *\([^ ;#\\]*\).*/\1 \3/p' "$1" \
        | awk '{ name = tolower($1); gsub(/[_.]+/, "-", name); print name "==" $2 }' | sort -u
}

# Die when a pin of a .in file is missing from its lock file: the .in changed after the last
# ./scripts/lock (a new or moved package would otherwise be silently not installed).
check_lock() {
    local pair input output missing
    for pair in requirements.in:requirements.txt requirements.in:requirements-dev.txt \
        requirements-dev.in:requirements-dev.txt; do
        input="$JUNCTION_ROOT/${pair%%:*}" output="$JUNCTION_ROOT/${pair##*:}"
        [[ -f "$input" ]] || continue
        [[ -f "$output" ]] || die "${pair##*:} is missing: run ./scripts/lock."
        missing="$(comm -23 <(pins "$input") <(pins "$output") | tr '\n' ' ')"
        [[ -z "$missing" ]] || die "${pair%%:*} pins ${missing}which ${pair##*:} does not: run ./scripts/lock."
    done
}

ensure_venv() {
    local requirements="$JUNCTION_ROOT/$1"
    check_lock
    if ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then
        local python
        python="$(find_python)" || die "Junction needs Python 3.11 or newer (python3.11 or python3 on PATH)."
        echo "Creating the virtualenv .venv with $python ($("$python" --version 2>&1))…"
        rm -rf "$VENV"
        "$python" -m venv "$VENV" \
            || die "could not create .venv: install the venv module (e.g. apt-get install python3.11-venv)."
    fi
    # One stamp per lock file: reinstall only when a lock file's content changed (the .in files
    # are scripts/lock's inputs; what is installed is what the .txt files say).
    local stamp="$VENV/.installed-$(basename "$requirements")"
    local digest
    digest="$(cat "$JUNCTION_ROOT"/requirements*.txt | sha256sum | cut -d' ' -f1)"
    if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$digest" ]]; then
        echo "Installing $(basename "$requirements") into .venv…"
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
            --require-hashes -r "$requirements" \
            || die "pip could not install $(basename "$requirements") (a package added to a .in file needs ./scripts/lock)."
        echo "$digest" >"$stamp"
    fi
}
