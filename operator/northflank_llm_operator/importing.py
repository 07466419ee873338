"""``northflank-llm-operator import``: list a project's LLM model deployments and print their manifests.

Safe to run against an account a running operator polls with: it reads ``x-ratelimit-remaining`` on
every page and stops before the account falls below a reserve, and it gives up on a listing that
does not end within :data:`MAX_PAGES`. Either way it prints no manifest: an incomplete listing
committed to Git would delete the resources it lacks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TextIO

from .credentials import CredentialsError, read_token_file
from .manifests import ImportOptions, build_manifests, render
from .northflank import (
    AuthenticationError,
    NorthflankClient,
    NorthflankError,
    NotFoundError,
    PermissionDeniedError,
    RateLimit,
    RateLimitError,
)
from .northflank.client import MAX_PAGE_SIZE
from .northflank.ratelimit import MAX_WAIT_SECONDS
from .settings import OperatorSettings

#: Northflank's documented default budget is 1000 requests per hour; import spends at most a tenth of
#: it on one listing: 100 pages of the documented maximum of 100 per page, 10,000 deployments. A
#: listing that says there is more after that is taken for a pagination that never ends.
DOCUMENTED_REQUESTS_PER_HOUR = 1000
MAX_PAGES = DOCUMENTED_REQUESTS_PER_HOUR // 10
#: Share of the account's budget import leaves alone by default (the operator's own default reserve).
DEFAULT_RESERVE_FRACTION = 0.1


class ImportFailed(Exception):
    """The import cannot go on; the message says why and what to do."""


async def list_all(
    client: NorthflankClient,
    project_id: str,
    *,
    token: str,
    team_id: str | None,
    progress: Callable[[str], None],
    reserve_fraction: float = DEFAULT_RESERVE_FRACTION,
) -> list[dict[str, Any]]:
    """Every item of the project's listing, following the cursor (or page numbers) to the end.

    ImportFailed when the next page would leave fewer than ``reserve_fraction`` of the account's
    budget, or when the listing has not ended after :data:`MAX_PAGES` pages.
    """
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    seen_cursors: set[str] = set()
    for page in range(1, MAX_PAGES + 1):
        result = await client.list_llm_model_deployments(
            project_id,
            token=token,
            team_id=team_id,
            per_page=MAX_PAGE_SIZE,
            cursor=cursor,
            page=None if cursor is not None or page == 1 else page,
        )
        items.extend(result.data.items)
        if not result.data.has_more:
            if page > 1:
                progress(f"listed {len(items)} deployments in {page} pages")
            return items
        progress(f"page {page}: {len(items)} deployments so far")
        _keep_reserve(result.rate_limit, reserve_fraction, pages=page)
        cursor = result.data.cursor
        if cursor is not None:
            if cursor in seen_cursors:
                raise ImportFailed("Northflank's listing repeats a page cursor; giving up rather than looping")
            seen_cursors.add(cursor)
    raise ImportFailed(
        f"the listing did not end after {MAX_PAGES} pages ({MAX_PAGES * MAX_PAGE_SIZE:,} deployments at the "
        f"documented maximum of {MAX_PAGE_SIZE} per page); Northflank's pagination looks endless, so import "
        "stopped there and printed nothing"
    )


def _keep_reserve(rate_limit: RateLimit, fraction: float, *, pages: int) -> None:
    """ImportFailed when one more request would leave fewer than ``fraction`` of the account's budget."""
    limit, remaining = rate_limit.limit, rate_limit.remaining
    if limit is None or remaining is None:
        return  # no headers (a proxy's answer): the page cap still bounds the listing
    reserve = math.ceil(limit * fraction)
    if remaining - 1 >= reserve:
        return
    reset = rate_limit.reset_seconds
    when = f" (the window resets in {math.ceil(min(reset, MAX_WAIT_SECONDS))}s)" if reset is not None else ""
    raise ImportFailed(
        f"stopped after {pages} of the listing's pages: Northflank says {remaining} of {limit} requests remain "
        f"in this window{when}, and import keeps {reserve} ({fraction * 100:g} %) for the operator on the same "
        "token; nothing was printed. Try again after the reset, or lower --reserve."
    )


def explain(error: NorthflankError, options: ImportOptions) -> str:
    """What a failed listing means for the person running the import."""
    if isinstance(error, AuthenticationError):
        return f"Northflank rejected the token (HTTP 401); check NORTHFLANK_API_TOKEN(_FILE). {error.message}"
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


def escaped(text: str) -> str:
    """``text`` with control, format and separator characters escaped (``\\x1b``, ``\\u202e``): an
    upstream id printed on a terminal can neither recolour it nor hide or reorder text."""
    return "".join(c if c.isprintable() or c == " " else c.encode("unicode_escape").decode("ascii") for c in text)


def _token(settings: OperatorSettings) -> str:
    """The token import uses: NORTHFLANK_API_TOKEN, or the file NORTHFLANK_API_TOKEN_FILE names."""
    if settings.api_token_file is not None:
        return read_token_file(settings.api_token_file)
    if settings.api_token is None:
        raise CredentialsError(
            "CredentialsNotConfigured",
            "Set NORTHFLANK_API_TOKEN (or NORTHFLANK_API_TOKEN_FILE) to a Northflank API token.",
        )
    return settings.api_token.get_secret_value()


async def run_import(
    options: ImportOptions,
    settings: OperatorSettings,
    out: TextIO,
    err: TextIO,
    *,
    reserve_fraction: float = DEFAULT_RESERVE_FRACTION,
) -> int:
    """Print the manifests on ``out``; progress and problems on ``err``. Returns the exit code."""

    def progress(message: str) -> None:
        print(f"northflank-llm-operator import: {escaped(message)}", file=err, flush=True)

    try:
        token = _token(settings)
    except CredentialsError as exc:
        progress(exc.message)
        return 2
    async with NorthflankClient(str(settings.api_base_url), timeout_seconds=settings.request_timeout_seconds) as client:
        try:
            items = await list_all(
                client,
                options.project_id,
                token=token,
                team_id=options.team_id,
                progress=progress,
                reserve_fraction=reserve_fraction,
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
    if any(m["spec"].get("forProvider", {}).get("ports") for m in manifests):
        progress(
            "forProvider.ports lists no custom domains (Northflank's GET does not return them): an update of "
            "ports would remove any; add them under ports[].domains, or remove ports to leave them unmanaged"
        )
    out.write(render(manifests))
    out.flush()
    progress(f"{len(manifests)} manifest(s) for project {options.project_id!r}")
    return 0
