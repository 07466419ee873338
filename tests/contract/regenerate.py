"""Regenerate the JSON Schemas in ``schemas/`` from Northflank's official JS client, byte for byte.

    python tests/contract/regenerate.py            # install (once, cached) and rewrite schemas/
    python tests/contract/regenerate.py --check    # regenerate into a temporary folder; exit 1 with a diff
    python tests/contract/regenerate.py --install  # only install the pinned npm packages (make tools)

The npm packages (``@northflank/js-client`` and ``ts-json-schema-generator``, pinned with every
dependency in ``package-lock.json``) and the Python client's ``_types.py`` (PyPI ``northflank``, by
hash) go to ``~/.cache/northflank-llm-operator/contract/<lock hash>``, outside the repository.
``entry.ts`` names the client's types; ``generate.mjs`` runs the generator. A newer client is tried
by editing ``package.json``, ``npm install --package-lock-only`` here, and ``--check``: the diff shows
what changed in Northflank's declared shapes.
"""

from __future__ import annotations

import argparse
import difflib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCHEMAS = HERE / "schemas"
_PINNED = ("package.json", "package-lock.json")
_MARKER = ".installed"
#: The official Python client, a second oracle: its TypedDicts type GET /v1/auth, which the JS client lacks.
PYPI_CLIENT = "northflank==2.1.0"
PYPI_WHEEL_SHA256 = "6b8369d5fc39b1fa4bac1de5f7d47604988e57d142a762683723f263d1543be0"
PYTHON_TYPES = "northflank-python-types.py"


def cache_dir() -> Path:
    """Where the pinned packages live: one folder per lock file, so a new pin never reuses an old install."""
    override = os.environ.get("NFLLM_CONTRACT_DIR")
    if override:
        return Path(override)
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "northflank-llm-operator" / "contract"
    pins = b"".join((HERE / name).read_bytes() for name in _PINNED) + PYPI_WHEEL_SHA256.encode()
    lock_hash = hashlib.sha256(pins).hexdigest()[:16]
    return root / lock_hash


def installed() -> Path | None:
    """The cache folder if the pinned packages are fully installed there, else None."""
    directory = cache_dir()
    return directory if (directory / _MARKER).exists() else None


def install() -> Path:
    """``npm ci`` the pinned packages into the cache (once; concurrent callers wait for the first)."""
    directory = cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (directory / _MARKER).exists():
            return directory
        for name in _PINNED:
            shutil.copyfile(HERE / name, directory / name)
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is not installed; the contract schemas are generated with Node.js")
        # --ignore-scripts: nothing from the registry runs here; only the .d.ts files are read.
        subprocess.run(
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=directory,
            check=True,
        )
        _extract_python_types(directory)
        (directory / _MARKER).write_text("ok\n")
    return directory


def _python_with_pip() -> str:
    """This interpreter, or the machine's: uv's virtual environments come without pip."""
    for candidate in (sys.executable, shutil.which("python3", path=os.defpath), "/usr/bin/python3"):
        if candidate and subprocess.run([candidate, "-m", "pip", "--version"], capture_output=True).returncode == 0:
            return candidate
    raise RuntimeError("no Python with pip found to download the official Python client")


def _extract_python_types(directory: Path) -> None:
    """``northflank/_types.py`` of the pinned wheel (checked against its sha256), nothing else of it."""
    with tempfile.TemporaryDirectory(prefix="nf-wheel-") as download:
        subprocess.run(
            [_python_with_pip(), "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
             "--dest", download, PYPI_CLIENT],
            check=True,
        )  # fmt: skip
        (wheel,) = Path(download).glob("*.whl")
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest != PYPI_WHEEL_SHA256:
            raise RuntimeError(f"{wheel.name} has sha256 {digest}, expected {PYPI_WHEEL_SHA256}")
        with zipfile.ZipFile(wheel) as archive:
            (directory / PYTHON_TYPES).write_bytes(archive.read("northflank/_types.py"))


def generate(out: Path, packages: Path) -> list[Path]:
    """Write every schema into ``out``; returns the files written."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not installed; the contract schemas are generated with Node.js")
    # entry.ts imports the client by a path relative to itself, so it sits next to node_modules.
    shutil.copyfile(HERE / "entry.ts", packages / "entry.ts")
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run([node, str(HERE / "generate.mjs"), str(packages), str(out)], check=True)
    return sorted(out.glob("*.json"))


def diff(committed: Path, generated: Path) -> str:
    """A unified diff of every schema file that differs, appeared or disappeared; empty when equal."""
    names = sorted({path.name for path in committed.glob("*.json")} | {path.name for path in generated.glob("*.json")})
    chunks: list[str] = []
    for name in names:
        old = (committed / name).read_text().splitlines(keepends=True) if (committed / name).exists() else []
        new = (generated / name).read_text().splitlines(keepends=True) if (generated / name).exists() else []
        chunks.extend(difflib.unified_diff(old, new, f"committed/{name}", f"regenerated/{name}"))
    return "".join(chunks)


def check(packages: Path) -> str:
    """Regenerate into a temporary folder and return the diff against ``schemas/``."""
    with tempfile.TemporaryDirectory(prefix="nf-contract-") as temporary:
        generate(Path(temporary), packages)
        return diff(SCHEMAS, Path(temporary))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="compare a fresh generation with schemas/")
    mode.add_argument("--install", action="store_true", help="only install the pinned npm packages")
    args = parser.parse_args(argv)
    packages = install()
    if args.install:
        print(packages)
        return 0
    if args.check:
        changes = check(packages)
        sys.stdout.write(changes or "schemas/ is up to date\n")
        return 1 if changes else 0
    for stale in SCHEMAS.glob("*.json"):
        stale.unlink()
    for path in generate(SCHEMAS, packages):
        print(path.relative_to(HERE))
    return 0


if __name__ == "__main__":
    sys.exit(main())
