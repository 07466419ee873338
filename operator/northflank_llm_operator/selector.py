"""Kubernetes label selectors in their string form (``kubectl get -l ...``), parsed and matched.

Used for sharding: an operator started with a selector only tracks the resources whose labels match it.
The grammar is Kubernetes' own (``k8s.io/apimachinery/pkg/labels``), without the numeric ``<``/``>``
operators::

    selector    := "" | requirement ("," requirement)*
    requirement := key | "!" key
                 | key ("=" | "==" | "!=") value
                 | key ("in" | "notin") "(" value ("," value)* ")"

Whitespace between tokens is ignored. Keys are qualified names (``[prefix/]name``: the prefix a DNS
subdomain of at most 253 characters, the name at most 63 characters of alphanumerics, ``-``, ``_`` and
``.`` starting and ending alphanumeric); values are empty or follow the name rules. As in Kubernetes,
``k!=v`` and ``k notin (...)`` also match resources without the label ``k``, and an empty selector
matches everything.

Pure: no kopf, no Kubernetes client; ``parse`` raises ``ValueError`` with a message that says what is
wrong and where.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from .settings import OperatorSettings

__all__ = ["LabelSelector", "Operator", "Requirement", "parse", "selector_for"]

_NAME: Final = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_DNS_LABEL: Final = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN: Final = re.compile(rf"{_DNS_LABEL}(\.{_DNS_LABEL})*")
_NAME_MAX: Final = 63
_PREFIX_MAX: Final = 253
# Characters that end an identifier; everything else that is not whitespace belongs to one.
_SPECIAL: Final = frozenset("!=,()<>")


class Operator(enum.Enum):
    EQUALS = "="
    NOT_EQUALS = "!="
    IN = "in"
    NOT_IN = "notin"
    EXISTS = "exists"
    DOES_NOT_EXIST = "!"


@dataclass(frozen=True)
class Requirement:
    """One comma-separated term of a selector. ``values`` is empty for the existence operators."""

    key: str
    operator: Operator
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        match self.operator:
            case Operator.EXISTS:
                return present
            case Operator.DOES_NOT_EXIST:
                return not present
            case Operator.EQUALS | Operator.IN:
                return present and labels[self.key] in self.values
            case Operator.NOT_EQUALS | Operator.NOT_IN:
                return not present or labels[self.key] not in self.values

    def __str__(self) -> str:
        match self.operator:
            case Operator.EXISTS:
                return self.key
            case Operator.DOES_NOT_EXIST:
                return f"!{self.key}"
            case Operator.EQUALS | Operator.NOT_EQUALS:
                (value,) = self.values
                return f"{self.key}{self.operator.value}{value}"
            case Operator.IN | Operator.NOT_IN:
                return f"{self.key} {self.operator.value} ({','.join(sorted(self.values))})"


@dataclass(frozen=True)
class LabelSelector:
    """All requirements must match (a logical AND); no requirements match every set of labels."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(requirement.matches(labels) for requirement in self.requirements)

    def __bool__(self) -> bool:
        """False for the empty selector, which selects everything."""
        return bool(self.requirements)

    def __str__(self) -> str:
        return ",".join(str(requirement) for requirement in self.requirements)


# ---------------------------------------------------------------------------------------------------
# validation, the rules of k8s.io/apimachinery/pkg/util/validation (IsQualifiedName, IsValidLabelValue)


def _check_key(key: str) -> None:
    if key.count("/") > 1:
        raise ValueError(f"invalid label key {key!r}: at most one '/' is allowed")
    prefix, slash, name = key.rpartition("/")
    if slash:
        if not prefix:
            raise ValueError(f"invalid label key {key!r}: the prefix before '/' must not be empty")
        if len(prefix) > _PREFIX_MAX or not _DNS_SUBDOMAIN.fullmatch(prefix):
            raise ValueError(
                f"invalid label key {key!r}: the prefix {prefix!r} must be a DNS subdomain (lower-case "
                f"alphanumerics, '-' and '.', at most {_PREFIX_MAX} characters)"
            )
    if not name:
        raise ValueError(f"invalid label key {key!r}: the name part must not be empty")
    if len(name) > _NAME_MAX or not _NAME.fullmatch(name):
        raise ValueError(
            f"invalid label key {key!r}: the name {name!r} must be at most {_NAME_MAX} characters of "
            "alphanumerics, '-', '_' and '.', starting and ending with an alphanumeric"
        )


def _check_value(key: str, value: str) -> None:
    if value and (len(value) > _NAME_MAX or not _NAME.fullmatch(value)):
        raise ValueError(
            f"invalid value {value!r} for label {key!r}: a label value is empty or at most {_NAME_MAX} "
            "characters of alphanumerics, '-', '_' and '.', starting and ending with an alphanumeric"
        )


# ---------------------------------------------------------------------------------------------------
# lexer and parser


@dataclass(frozen=True)
class _Token:
    text: str
    position: int  # 0-based offset into the selector string
    special: bool  # an operator or punctuation, as opposed to an identifier

    def describe(self) -> str:
        return f"{self.text!r} at position {self.position + 1}" if self.text else "the end of the selector"


def _tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char.isspace():
            index += 1
        elif char in _SPECIAL:
            two = text[index : index + 2]
            if two in ("==", "!="):
                tokens.append(_Token(two, index, special=True))
                index += 2
            else:
                tokens.append(_Token(char, index, special=True))
                index += 1
        else:
            start = index
            while index < len(text) and not text[index].isspace() and text[index] not in _SPECIAL:
                index += 1
            tokens.append(_Token(text[start:index], start, special=False))
    tokens.append(_Token("", len(text), special=True))  # end marker
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self._text = text
        self._tokens = _tokens(text)
        self._index = 0

    def _peek(self) -> _Token:
        return self._tokens[self._index]

    def _next(self) -> _Token:
        token = self._tokens[self._index]
        if token.text:  # the end marker is never consumed past
            self._index += 1
        return token

    def _fail(self, expected: str, token: _Token) -> ValueError:
        return ValueError(f"invalid label selector {self._text!r}: expected {expected}, found {token.describe()}")

    def _key(self) -> str:
        token = self._next()
        if token.special or token.text in ("in", "notin"):
            raise self._fail("a label key", token)
        _check_key(token.text)
        return token.text

    def _value(self, key: str, *, terminators: tuple[str, ...]) -> str:
        token = self._peek()
        if token.special and token.text in terminators:
            return ""  # an empty value, as in `key=` or `key in (a,)`
        self._next()
        if token.special:
            raise self._fail("a label value", token)
        _check_value(key, token.text)
        return token.text

    def _set(self, key: str) -> frozenset[str]:
        opening = self._next()
        if opening.text != "(":
            raise self._fail("'(' after 'in'/'notin'", opening)
        values = {self._value(key, terminators=(",", ")"))}
        while (separator := self._next()).text == ",":
            values.add(self._value(key, terminators=(",", ")")))
        if separator.text != ")":
            raise self._fail("',' or ')' in a set of values", separator)
        return frozenset(values)

    def _requirement(self) -> Requirement:
        if self._peek().text == "!":
            self._next()
            key = self._key()
            following = self._peek()
            if following.text not in (",", ""):
                raise self._fail("',' or the end after '!" + key + "'", following)
            return Requirement(key, Operator.DOES_NOT_EXIST)
        key = self._key()
        if self._peek().text in ("", ","):  # the separator is left for the caller
            return Requirement(key, Operator.EXISTS)
        token = self._next()
        match token.text:
            case "=" | "==":
                return Requirement(key, Operator.EQUALS, frozenset({self._value(key, terminators=(",", ""))}))
            case "!=":
                return Requirement(key, Operator.NOT_EQUALS, frozenset({self._value(key, terminators=(",", ""))}))
            case "in" if not token.special:
                return Requirement(key, Operator.IN, self._set(key))
            case "notin" if not token.special:
                return Requirement(key, Operator.NOT_IN, self._set(key))
            case "<" | ">":
                raise ValueError(
                    f"invalid label selector {self._text!r}: the numeric operator {token.text!r} at position "
                    f"{token.position + 1} is not supported; use =, ==, !=, in, notin, or a bare key or !key"
                )
            case _:
                raise self._fail("an operator (=, ==, !=, in, notin), ',' or the end", token)

    def parse(self) -> LabelSelector:
        if not self._text.strip():
            return LabelSelector()
        requirements = [self._requirement()]
        while (separator := self._next()).text == ",":
            requirements.append(self._requirement())
        if separator.text:
            raise self._fail("',' or the end", separator)
        return LabelSelector(tuple(requirements))


def parse(text: str) -> LabelSelector:
    """Parse a label selector string; raises ``ValueError`` saying what is wrong and where.

    >>> parse("shard in (a, b), !legacy").matches({"shard": "a"})
    True
    """
    try:
        return _Parser(text).parse()
    except ValueError as exc:
        if str(exc).startswith("invalid label selector"):
            raise
        raise ValueError(f"invalid label selector {text!r}: {exc}") from None


@functools.lru_cache(maxsize=16)
def _parse_cached(text: str) -> LabelSelector:
    return parse(text)


def selector_for(settings: OperatorSettings) -> LabelSelector | None:
    """The selector of ``settings.label_selector``, parsed once per distinct string; ``None`` when unset.

    An empty selector (matching everything) is also ``None``, so callers can skip matching altogether.
    """
    text = settings.label_selector
    if text is None:
        return None
    selector = _parse_cached(text)
    return selector if selector else None
