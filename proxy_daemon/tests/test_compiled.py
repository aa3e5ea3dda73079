"""The Cython builds of the hot-path modules: used when built, never used when stale."""

from __future__ import annotations

import importlib
import importlib.machinery
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from proxy_daemon import compiled


def test_a_stale_build_is_discarded_with_a_warning(tmp_path: Path) -> None:
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    for name in ("fresh", "edited"):
        (tmp_path / f"{name}.py").write_text(f"NAME = {name!r}\n")
        (tmp_path / f"{name}{suffix}").write_bytes(b"not really an extension")
    manifest = {name: compiled.source_hash(name, tmp_path) for name in ("fresh", "edited")}
    (tmp_path / "compiled.json").write_text(json.dumps(manifest))
    (tmp_path / "edited.py").write_text("NAME = 'edited again'\n")

    with pytest.warns(RuntimeWarning, match=f"edited{suffix}"):
        stale = compiled.discard_stale(tmp_path, ("fresh", "edited"))

    assert stale == [f"edited{suffix}"]
    assert (tmp_path / f"fresh{suffix}").exists()
    assert not (tmp_path / f"edited{suffix}").exists()


def test_a_build_without_its_manifest_is_discarded(tmp_path: Path) -> None:
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    (tmp_path / "orphan.py").write_text("X = 1\n")
    (tmp_path / f"orphan{suffix}").write_bytes(b"")
    with pytest.warns(RuntimeWarning):
        assert compiled.discard_stale(tmp_path, ("orphan",)) == [f"orphan{suffix}"]


def test_a_build_of_a_renamed_module_is_discarded(tmp_path: Path) -> None:
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    (tmp_path / "renamed.py").write_text("X = 1\n")
    (tmp_path / f"old_name{suffix}").write_bytes(b"")
    with pytest.warns(RuntimeWarning, match=f"old_name{suffix}"):
        assert compiled.discard_stale(tmp_path, ("renamed",)) == [f"old_name{suffix}"]
    assert not (tmp_path / f"old_name{suffix}").exists()


def test_the_hot_path_runs_compiled_exactly_when_it_is_built() -> None:
    """`make install` (so CI's `make test`) builds the modules: then they must be the ones
    in use, since a silent fall back to plain Python would hide a proxy a third slower
    from the suite and the benchmarks. Without a build, the sources run."""
    built = bool(os.environ.get("CI")) or compiled.MANIFEST.exists()
    pure = bool(os.environ.get("GOPROXY_PURE_PYTHON"))
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    for name in compiled.MODULES:
        module = importlib.import_module(f"proxy_daemon.{name}")
        assert module.__file__ is not None
        assert module.__file__.endswith(suffixes) is (built and not pure), module.__file__


def test_goproxy_pure_python_imports_the_sources(tmp_path: Path) -> None:
    """For coverage-guided fuzzing and debugging the sources can be forced."""
    code = "import proxy_daemon.http1 as h, proxy_daemon.server as s; print(h.__file__, s.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "GOPROXY_PURE_PYTHON": "1"},
        cwd=compiled.HERE.parent,
        timeout=60,
    ).stdout.split()
    assert [Path(f).name for f in out] == ["http1.py", "server.py"]
