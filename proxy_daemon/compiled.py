"""Compiled copies of the proxy's hot-path modules (Cython), built in place by `make install`.

The modules stay plain Python. Cython compiles them unchanged into extension modules that
Python imports in preference to the .py files beside them: about a third less CPU per
proxied request on the benchmark machine (bench/RESULTS.md). Without a build everything
runs as plain Python.

Each build records a hash of every source it compiled (compiled.json). `discard_stale()`
runs when proxy_daemon is imported and deletes any extension module whose source changed
since, so an edit is never shadowed by an old build. With GOPROXY_PURE_PYTHON=1 the
sources are imported even where a build exists (coverage-guided fuzzing, debugging).

    python proxy_daemon/compiled.py           # build (what `make install` runs)
    python proxy_daemon/compiled.py --clean   # remove the builds
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import sys
import tempfile
import warnings
from pathlib import Path

if __name__ == "__main__":
    # Building (`make install`). The proxy imports this module at every start and must
    # not load Cython and setuptools there.
    from Cython.Build import cythonize
    from setuptools import Extension, setup

HERE = Path(__file__).resolve().parent
MODULES = (
    "auth",
    "http1",
    "limits",
    "metering",
    "metrics",
    "registry",
    "server",
    "sockio",
    "tunnel",
    "upstream",
)
MANIFEST = HERE / "compiled.json"


def source_hash(name: str, folder: Path = HERE) -> str:
    return hashlib.sha256((folder / f"{name}.py").read_bytes()).hexdigest()


def built_files(name: str, folder: Path = HERE) -> list[Path]:
    """Extension modules of `name` in `folder` (any ABI suffix)."""
    return [
        folder / f"{name}{suffix}"
        for suffix in importlib.machinery.EXTENSION_SUFFIXES
        if (folder / f"{name}{suffix}").exists()
    ]


def orphans(folder: Path = HERE, modules: tuple[str, ...] = MODULES) -> list[Path]:
    """Extension modules in `folder` built from a source that no longer exists there (a
    renamed or deleted module): they would be imported in its place by its old name."""
    found: set[Path] = set()
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        for path in folder.glob(f"*{suffix}"):
            name = path.name.partition(".")[0]  # a module name has no dot
            if name not in modules and not (folder / f"{name}.py").exists():
                found.add(path)
    return sorted(found)


def discard_stale(folder: Path = HERE, modules: tuple[str, ...] = MODULES) -> list[str]:
    """Delete extension modules not built from the current sources; their names."""
    manifest_path = folder / MANIFEST.name
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        manifest = {}
    stale: list[str] = []
    for path in orphans(folder, modules):
        path.unlink(missing_ok=True)
        stale.append(path.name)
    for name in modules:
        files = built_files(name, folder)
        if files and manifest.get(name) != source_hash(name, folder):
            for path in files:
                path.unlink(missing_ok=True)
                stale.append(path.name)
    if stale:
        warnings.warn(
            f"discarded compiled modules older than their sources: {', '.join(stale)} "
            "(plain Python runs instead; `make install` rebuilds them)",
            RuntimeWarning,
            stacklevel=2,
        )
    return stale


class _SourcesFirst(importlib.abc.MetaPathFinder):
    """Finds the hot-path modules as their .py sources, ahead of any extension module."""

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        package, _, name = fullname.rpartition(".")
        if package != "proxy_daemon" or name not in MODULES:
            return None
        return importlib.util.spec_from_file_location(fullname, HERE / f"{name}.py")


def prefer_sources() -> None:
    """Import the hot-path modules from their sources from now on."""
    if not any(isinstance(finder, _SourcesFirst) for finder in sys.meta_path):
        sys.meta_path.insert(0, _SourcesFirst())


def build() -> None:
    """Compile MODULES in place (only when this file runs as a script: see the imports)."""
    root = HERE.parent
    extensions = [Extension(f"proxy_daemon.{name}", [str(HERE / f"{name}.py")]) for name in MODULES]
    with tempfile.TemporaryDirectory(prefix="goproxy-cython-") as tmp:
        modules = cythonize(
            extensions,
            build_dir=tmp,
            language_level=3,
            quiet=True,
            # Compiled functions keep Python's introspection (signatures, __defaults__).
            compiler_directives={"binding": True},
        )
        setup(
            name="goproxy-proxy-daemon-compiled",
            packages=[],
            py_modules=[],
            ext_modules=modules,
            script_args=["-q", "build_ext", "--inplace", "--parallel", "2", "--build-temp", tmp],
            script_name=str(root / "setup.py"),
        )
    MANIFEST.write_text(json.dumps({name: source_hash(name) for name in MODULES}, indent=1))
    print(f"compiled {len(MODULES)} proxy modules: {', '.join(MODULES)}")


def clean() -> None:
    for name in MODULES:
        for path in built_files(name):
            path.unlink()
    for path in orphans():
        path.unlink()
    MANIFEST.unlink(missing_ok=True)


if __name__ == "__main__":
    clean() if "--clean" in sys.argv[1:] else build()
