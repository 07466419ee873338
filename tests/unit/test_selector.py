"""Label selectors: the Kubernetes string grammar, its matching rules and its error messages."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from northflank_llm_operator.selector import LabelSelector, Operator, Requirement, parse, selector_for

# ---------------------------------------------------------------------------------------------------
# parsing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("shard=a", [Requirement("shard", Operator.EQUALS, frozenset({"a"}))]),
        ("shard==a", [Requirement("shard", Operator.EQUALS, frozenset({"a"}))]),
        ("shard!=a", [Requirement("shard", Operator.NOT_EQUALS, frozenset({"a"}))]),
        ("shard", [Requirement("shard", Operator.EXISTS)]),
        ("!shard", [Requirement("shard", Operator.DOES_NOT_EXIST)]),
        ("shard in (a,b)", [Requirement("shard", Operator.IN, frozenset({"a", "b"}))]),
        ("shard notin (a,b)", [Requirement("shard", Operator.NOT_IN, frozenset({"a", "b"}))]),
        ("shard=", [Requirement("shard", Operator.EQUALS, frozenset({""}))]),
        ("shard in (a,)", [Requirement("shard", Operator.IN, frozenset({"a", ""}))]),
        ("shard in ()", [Requirement("shard", Operator.IN, frozenset({""}))]),  # as Kubernetes parses it
        (
            "example.com/team=ml,tier",
            [Requirement("example.com/team", Operator.EQUALS, frozenset({"ml"})), Requirement("tier", Operator.EXISTS)],
        ),
        (
            "  a = 1 ,  b!=2,!c , d in ( x , y ) ,e notin(z)  ",
            [
                Requirement("a", Operator.EQUALS, frozenset({"1"})),
                Requirement("b", Operator.NOT_EQUALS, frozenset({"2"})),
                Requirement("c", Operator.DOES_NOT_EXIST),
                Requirement("d", Operator.IN, frozenset({"x", "y"})),
                Requirement("e", Operator.NOT_IN, frozenset({"z"})),
            ],
        ),
        ("a_b.c-d=Value_1.x-y", [Requirement("a_b.c-d", Operator.EQUALS, frozenset({"Value_1.x-y"}))]),
        ("k=in", [Requirement("k", Operator.EQUALS, frozenset({"in"}))]),
    ],
)
def test_parses_every_operator(text: str, expected: list[Requirement]) -> None:
    assert parse(text).requirements == tuple(expected)


@pytest.mark.parametrize("text", ["", "   ", "\t\n"])
def test_empty_selector_selects_everything(text: str) -> None:
    selector = parse(text)
    assert selector == LabelSelector()
    assert not selector
    assert selector.matches({})
    assert selector.matches({"any": "thing"})


@pytest.mark.parametrize(
    "text",
    ["shard=a", "!shard", "shard", "shard!=a", "example.com/shard in (a,b)", "a notin (,x),b=", "a=1,b!=2,!c,d"],
)
def test_string_form_round_trips(text: str) -> None:
    selector = parse(text)
    assert parse(str(selector)) == selector


def test_string_form_is_canonical() -> None:
    assert str(parse(" b in ( y , x ) , a == 1 ")) == "b in (x,y),a=1"


# ---------------------------------------------------------------------------------------------------
# matching


@pytest.mark.parametrize(
    ("text", "labels", "matches"),
    [
        ("shard=a", {"shard": "a"}, True),
        ("shard=a", {"shard": "b"}, False),
        ("shard=a", {}, False),
        ("shard==a", {"shard": "a", "other": "x"}, True),
        ("shard!=a", {"shard": "b"}, True),
        ("shard!=a", {}, True),  # Kubernetes: != also selects resources without the label
        ("shard!=a", {"shard": "a"}, False),
        ("shard", {"shard": ""}, True),
        ("shard", {"other": "x"}, False),
        ("!shard", {}, True),
        ("!shard", {"shard": ""}, False),
        ("shard in (a,b)", {"shard": "b"}, True),
        ("shard in (a,b)", {"shard": "c"}, False),
        ("shard in (a,b)", {}, False),
        ("shard notin (a,b)", {"shard": "c"}, True),
        ("shard notin (a,b)", {}, True),  # notin also selects resources without the label
        ("shard notin (a,b)", {"shard": "a"}, False),
        ("shard=", {"shard": ""}, True),
        ("shard=", {}, False),
        ("shard=a,tier", {"shard": "a", "tier": "gpu"}, True),
        ("shard=a,tier", {"shard": "a"}, False),  # every requirement must hold
        ("shard=A", {"shard": "a"}, False),  # values are case-sensitive
    ],
)
def test_matches_like_kubernetes(text: str, labels: dict[str, str], matches: bool) -> None:
    assert parse(text).matches(labels) is matches


def test_disjoint_shards_split_resources_without_overlap() -> None:
    shards = [parse("shard=a"), parse("shard=b"), parse("shard notin (a,b)")]
    for labels in ({"shard": "a"}, {"shard": "b"}, {"shard": "c"}, {}):
        assert sum(shard.matches(labels) for shard in shards) == 1, labels


# ---------------------------------------------------------------------------------------------------
# errors


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("=a", "expected a label key, found '=' at position 1"),
        ("shard=a,", "expected a label key, found the end of the selector"),
        (",shard", "expected a label key, found ',' at position 1"),
        ("a,,b", "expected a label key, found ',' at position 3"),
        ("shard a", "expected an operator (=, ==, !=, in, notin), ',' or the end, found 'a' at position 7"),
        ("shard=a b", "expected ',' or the end, found 'b' at position 9"),
        ("shard===a", "expected a label value, found '=' at position 8"),
        ("shard=(a)", "expected a label value, found '(' at position 7"),
        ("shard in a", "expected '(' after 'in'/'notin', found 'a' at position 10"),
        ("shard in (a", "expected ',' or ')' in a set of values, found the end of the selector"),
        ("shard in (a b)", "expected ',' or ')' in a set of values, found 'b' at position 13"),
        ("shard notin", "expected '(' after 'in'/'notin', found the end of the selector"),
        ("!shard=a", "expected ',' or the end after '!shard', found '=' at position 7"),
        ("!", "expected a label key, found the end of the selector"),
        ("in (a)", "expected a label key, found 'in' at position 1"),
        ("shard>1", "the numeric operator '>' at position 6 is not supported"),
        ("shard<1", "the numeric operator '<' at position 6 is not supported"),
        ("shard=a)", "expected ',' or the end, found ')' at position 8"),
    ],
)
def test_syntax_errors_say_what_and_where(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="invalid label selector") as raised:
        parse(text)
    assert message in str(raised.value)
    assert repr(text) in str(raised.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("-shard=a", "invalid label key '-shard'"),
        ("shard-=a", "invalid label key 'shard-'"),
        ("sh@rd=a", "invalid label key 'sh@rd'"),
        ("k" * 64, "at most 63 characters"),
        ("/shard", "the prefix before '/' must not be empty"),
        ("example.com/", "the name part must not be empty"),
        ("Example.com/shard", "must be a DNS subdomain"),
        ("a/b/c", "at most one '/' is allowed"),
        ("x" * 254 + "/shard", "must be a DNS subdomain"),
        ("shard=-a", "invalid value '-a' for label 'shard'"),
        ("shard=a.", "invalid value 'a.' for label 'shard'"),
        ("shard=" + "v" * 64, "at most 63"),
        ("shard in (a,b@)", "invalid value 'b@' for label 'shard'"),
        ("shard!=a/b", "invalid value 'a/b'"),
    ],
)
def test_invalid_keys_and_values_are_named(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="invalid label selector") as raised:
        parse(text)
    assert message in str(raised.value)


def test_longest_valid_key_and_value_are_accepted() -> None:
    key = ".".join(["p" * 63] * 3) + "." + "q" * 61 + "/" + "n" * 63  # prefix of 253 characters
    assert len(key.split("/")[0]) == 253
    assert parse(f"{key}={'v' * 63}").matches({key: "v" * 63})


# ---------------------------------------------------------------------------------------------------
# selector_for


def _settings(label_selector: str | None) -> Any:
    return SimpleNamespace(label_selector=label_selector)


def test_selector_for_is_none_without_a_selector() -> None:
    assert selector_for(_settings(None)) is None
    assert selector_for(_settings("")) is None


def test_selector_for_parses_each_string_once() -> None:
    first = selector_for(_settings("shard=cache-test"))
    again = selector_for(_settings("shard=cache-test"))
    assert first is not None
    assert first is again
    assert first.matches({"shard": "cache-test"})
