"""Deployments served with a hostile value inside an otherwise valid answer (see ``HostileItem``).

The answer is written as JSON text with the hostile value spliced in, so a value no encoder would
produce (objects nested 10,000 deep) costs only its own bytes.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web

from northflank_api_simulator.models import HostileItem

_PLACEHOLDER = "__SIMULATOR_HOSTILE_VALUE__"
_NESTED_KEY = b'{"d": '


def value_text(item: HostileItem) -> bytes:
    """The hostile value as JSON text."""
    if item.depth is not None:
        return _NESTED_KEY * (item.depth - 1) + b"{}" + b"}" * (item.depth - 1)
    return b'"' + b"x" * (item.text_bytes or 0) + b'"'


def item_text(deployment: Mapping[str, Any], hostile: HostileItem | None) -> bytes:
    """One deployment as JSON text, with the hostile value at ``hostile.field`` when given."""
    if hostile is None:
        return json.dumps(deployment).encode()
    target = copy.deepcopy(dict(deployment))
    *parents, leaf = hostile.field.split(".")
    node = target
    for name in parents:
        child = node.get(name)
        if not isinstance(child, dict):
            child = node[name] = {}
        node = child
    node[leaf] = _PLACEHOLDER
    return json.dumps(target).encode().replace(json.dumps(_PLACEHOLDER).encode(), value_text(hostile), 1)


def json_text_response(text: bytes) -> web.Response:
    return web.Response(body=text, content_type="application/json")


def single_response(deployment: Mapping[str, Any], hostile: HostileItem) -> web.Response:
    """``{"data": <deployment>}`` for the single GET."""
    return json_text_response(b'{"data": ' + item_text(deployment, hostile) + b"}")


def listing_response(
    items: Sequence[Mapping[str, Any]], hostile: Mapping[str, HostileItem], pagination: Mapping[str, Any]
) -> web.Response:
    """A listing page whose items named in ``hostile`` (by id) carry their hostile value."""
    texts = [item_text(item, hostile.get(str(item.get("id")))) for item in items]
    body = (
        b'{"data": {"llmModelDeployments": ['
        + b", ".join(texts)
        + b']}, "pagination": '
        + json.dumps(dict(pagination)).encode()
        + b"}"
    )
    return json_text_response(body)
