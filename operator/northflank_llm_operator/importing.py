"""``northflank-llm-operator import``: list a project's LLM model deployments and print their manifests."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TextIO

from .manifests import ImportOptions, build_manifests, render
from .northflank import (
    AuthenticationError,
    NorthflankClient,
    NorthflankError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
)
from .settings import OperatorSettings

#: A listing longer than this many pages (of 100) is taken for a pagination that never ends.
MAX_PAGES = 10_000


class ImportFailed(Exception):
    """The import cannot go on; the message says why and what to do."""


async def list_all(
    client: NorthflankClient,
    project_id: str,
    *,
    token: str,
    team_id: str | None,
    progress: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Every item of the project's listing, following the cursor (or page numbers) to the end."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    seen_cursors: set[str] = set()
    for page in range(1, MAX_PAGES + 1):
        result = await client.list_llm_model_deployments(
            project_id,
            token=token,
            team_id=team_id,
            cursor=cursor,
            page=None if cursor is not None or page == 1 else page,
        )
        items.extend(result.data.items)
        if not result.data.has_more:
            if page > 1:
                progress(f"listed {len(items)} deployments in {page} pages")
            return items
        progress(f"page {page}: {len(items)} deployments so far")
        cursor = result.data.cursor
        if cursor is not None:
            if cursor in seen_cursors:
                raise ImportFailed("Northflank's listing repeats a page cursor; giving up rather than looping")
            seen_cursors.add(cursor)
    raise ImportFailed(f"the listing did not end after {MAX_PAGES} pages")


def explain(error: NorthflankError, options: ImportOptions) -> str:
    """What a failed listing means for the person running the import."""
    if isinstance(error, AuthenticationError):
        return f"Northflank rejected the token (HTTP 401); check NORTHFLANK_API_TOKEN. {error.message}"
    if isinstance(error, PermissionDeniedError):
        return f"the token may not read project {options.project_id!r} (HTTP 403). {error.message}"
    if isinstance(error, NotFoundError):
        hint = "" if options.team_id else " With an organisation token, name the team with --team."
        return f"project {options.project_id!r} does not exist for this token (HTTP 404).{hint} {error.message}"
    if isinstance(error, RateLimitError):
        wait = error.rate_limit.wait_seconds()
        when = f"; it resets in {math.ceil(wait)}s" if wait is not None else ""
        return f"Northflank's request budget for this token is spent (HTTP 429){when}. Try again later."
    return f"listing the project failed: {error.message}"


async def run_import(options: ImportOptions, settings: OperatorSettings, out: TextIO, err: TextIO) -> int:
    """Print the manifests on ``out``; progress and problems on ``err``. Returns the exit code."""
    if settings.api_token is None:
        print("northflank-llm-operator import: set NORTHFLANK_API_TOKEN to a Northflank API token", file=err)
        return 2

    def progress(message: str) -> None:
        print(f"northflank-llm-operator import: {message}", file=err, flush=True)

    async with NorthflankClient(str(settings.api_base_url), timeout_seconds=settings.request_timeout_seconds) as client:
        try:
            items = await list_all(
                client,
                options.project_id,
                token=settings.api_token.get_secret_value(),
                team_id=options.team_id,
                progress=progress,
            )
        except NorthflankError as exc:
            progress(explain(exc, options))
            return 1
        except ImportFailed as exc:
            progress(str(exc))
            return 1
    manifests, notes = build_manifests(items, options)
    for note in notes:
        progress(f"deployment {note.deployment} {note.message}")
    out.write(render(manifests))
    out.flush()
    progress(f"{len(manifests)} manifest(s) for project {options.project_id!r}")
    return 0
