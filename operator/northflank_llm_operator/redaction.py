"""Keeps tokens out of every log line, whichever library writes it and at whatever level.

httpcore/h11 at DEBUG can print a refused header whole (``Illegal header value b'Bearer ...'``), and
the Kubernetes client at DEBUG prints response bodies (a Secret's base64 data). Rather than trusting
each library, a log record factory rewrites every record as it is created: ``Bearer``/``Basic``
credentials, ``Authorization`` header values and every token the operator has seen (and its base64
form) become ``<redacted>``. Records below a logger's level are never created, so this costs
nothing for suppressed debug output.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
from typing import Any

REDACTED = "<redacted>"
#: Shorter strings are too likely to occur by chance to be replaced everywhere.
_MIN_SECRET_LENGTH = 8

_CREDENTIAL = re.compile(
    r"(?i)\b(bearer|basic)(\s+|\\x20|%20)[^\s'\",;)\]}]+"
    r"|(?i:authorization)(['\"]?\s*[:=,]\s*\(?\s*(?-i:b)?['\"]?)[^'\"\n,)}]+"
)
_lock = threading.Lock()
_secrets: set[str] = set()
#: The same, longest first (a token before any shorter form inside it); rebuilt only when one is added,
#: not for every log record.
_longest_first: tuple[str, ...] = ()
_installed = False


def register_secret(secret: str) -> None:
    """Redact ``secret`` (and its base64 form, as in a Secret's data) from every later log record."""
    if len(secret) < _MIN_SECRET_LENGTH:
        return
    global _longest_first
    forms = {secret, base64.b64encode(secret.encode()).decode(), repr(secret)[1:-1]}
    with _lock:
        if forms <= _secrets:
            return  # seen before: every Secret re-read registers its token again
        _secrets.update(forms)
        _longest_first = tuple(sorted(_secrets, key=len, reverse=True))


def unregister_secret(secret: str) -> None:
    """Stop looking for ``secret`` (no resource uses it any more), so the set does not only grow."""
    global _longest_first
    forms = {secret, base64.b64encode(secret.encode()).decode(), repr(secret)[1:-1]}
    with _lock:
        if not forms & _secrets:
            return
        _secrets.difference_update(forms)
        _longest_first = tuple(sorted(_secrets, key=len, reverse=True))


def redact(text: str) -> str:
    text = _CREDENTIAL.sub(_replace_credential, text)
    for secret in _longest_first:  # a tuple swapped whole: safe to read without the lock
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _replace_credential(match: re.Match[str]) -> str:
    if match.group(1) is not None:
        return f"{match.group(1)} {REDACTED}"
    return f"Authorization{match.group(3)}{REDACTED}"


def install() -> None:
    """Wrap the process's log record factory (once); every record is redacted as it is made."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it to the handler to report
            return record
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            # Exception messages carry header values too; format once, redacted, for every handler.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return record

    logging.setLogRecordFactory(factory)
