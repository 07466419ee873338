"""Run ``northflank-llm-operator import`` as users do: the installed console script, a clean environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_import(
    base_url: str, token: str | None, *args: str, timeout: float = 60, token_file: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NORTHFLANK_", "NF_"))}
    env["NORTHFLANK_API_BASE_URL"] = base_url
    if token is not None:
        env["NORTHFLANK_API_TOKEN"] = token
    if token_file is not None:
        env["NORTHFLANK_API_TOKEN_FILE"] = str(token_file)
    console_script = Path(sys.executable).with_name("northflank-llm-operator")
    return subprocess.run(
        [str(console_script), "import", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
