"""The committed canvas bundle is what its sources build to (interactions/frontend/README.md).

`npm ci` installs the lockfile's exact versions into a copy of interactions/frontend/, the
build writes there, and the files must equal the committed ones byte for byte: the build is
deterministic (fixed file names, no hashes, timestamps or source maps), so no normalisation is
needed. Skipped where there is no npm: the bundle is committed so that running Junction never
needs Node.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FRONTEND = ROOT / "interactions" / "frontend"
BUNDLE = ROOT / "interactions" / "static" / "interactions" / "canvas"

pytestmark = pytest.mark.slow


@pytest.mark.skipif(shutil.which("npm") is None or shutil.which("node") is None,
                    reason="npm and node are not installed: the committed bundle cannot be rebuilt here")
def test_the_committed_bundle_is_what_the_sources_build(tmp_path):
    source = tmp_path / "frontend"
    shutil.copytree(FRONTEND, source, ignore=shutil.ignore_patterns("node_modules"))
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=source, check=True,
                   capture_output=True, timeout=300)
    out = tmp_path / "built"
    subprocess.run(["node", "build.mjs", str(out)], cwd=source, check=True, capture_output=True, timeout=120)
    built = sorted(p.name for p in out.iterdir())
    assert built == sorted(p.name for p in BUNDLE.iterdir()) == ["canvas.css", "canvas.js"]
    for name in built:
        assert (out / name).read_bytes() == (BUNDLE / name).read_bytes(), (
            f"{name} differs from the sources' build: run `npm ci && npm run build` in interactions/frontend "
            "and commit interactions/static/interactions/canvas/"
        )
