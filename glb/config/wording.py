"""glb's own words for pydantic's validation errors: what was given (quoted), what is expected,
and a did-you-mean for an unknown key or name."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_settings import NoDecode

Loc = Sequence[int | str]


def shown(value: object) -> str:
    """A value as the message quotes it: text in quotes, numbers and booleans as YAML writes
    them, a list or mapping by its kind (their content is reported item by item)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    return kind(value)


def kind(value: object) -> str:
    """What a YAML value is, in words: "a list", "a mapping", "text 'x'", "a number 3"..."""
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, str):
        return f"text {shown(value)}"
    if isinstance(value, bool):
        return f"a boolean ({shown(value)})"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if value is None:
        return "nothing (null)"
    return type(value).__name__


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """ "; did you mean 'x'?" for the closest of `choices`, or "" when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _range(word: str, bound: str) -> Callable[[Mapping[str, Any]], str]:
    def describe(error: Mapping[str, Any]) -> str:
        value = error["ctx"][bound]
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return f"{shown(error['input'])} is out of range: it must be {word} {value}"

    return describe


def _expected(what: str) -> Callable[[Mapping[str, Any]], str]:
    return lambda error: f"expected {what}, got {kind(error['input'])}"


def _not_a(what: str) -> Callable[[Mapping[str, Any]], str]:
    return lambda error: f"{shown(error['input'])} is not {what}"


_MESSAGES: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "missing": lambda _: "required key is missing",
    "invalid_key": lambda e: f"a key must be a name (text), not {kind(e['input'])}",
    "model_type": _expected("a mapping"),
    "model_attributes_type": _expected("a mapping"),
    "dict_type": _expected("a mapping"),
    "list_type": _expected("a list"),
    "tuple_type": _expected("a list"),
    "string_type": _expected("text"),
    "int_type": _expected("a whole number"),
    "int_parsing": _not_a("a whole number"),
    "int_from_float": _not_a("a whole number"),
    "float_type": _expected("a number"),
    "float_parsing": _not_a("a number"),
    "bool_type": _not_a("a boolean (use true or false)"),
    "bool_parsing": _not_a("a boolean (use true or false)"),
    "enum": lambda e: f"{shown(e['input'])} is not one of {e['ctx']['expected']}",
    "literal_error": lambda e: f"{shown(e['input'])} is not one of {e['ctx']['expected']}",
    "string_pattern_mismatch": lambda e: (
        f"{shown(e['input'])} does not match the pattern {e['ctx']['pattern']}"
    ),
    "greater_than": _range("greater than", "gt"),
    "greater_than_equal": _range("at least", "ge"),
    "less_than": _range("less than", "lt"),
    "less_than_equal": _range("at most", "le"),
    "too_short": lambda e: (
        f"needs at least {e['ctx']['min_length']} item{'' if e['ctx']['min_length'] == 1 else 's'}"
        f", got {e['ctx']['actual_length']}"
    ),
    "too_long": lambda e: (
        f"has {e['ctx']['actual_length']} items, at most {e['ctx']['max_length']} are allowed"
    ),
    "string_too_short": lambda e: (
        f"{shown(e['input'])} is too short: at least {e['ctx']['min_length']} character(s)"
    ),
    "string_too_long": lambda e: (
        f"{shown(e['input'])} is too long: at most {e['ctx']['max_length']} character(s)"
    ),
    "path_not_file": lambda e: f"{shown(str(e['input']))} does not point to a file",
    "path_type": _expected("a file path"),
}


def message(error: Mapping[str, Any], root: type[BaseModel]) -> str:
    """One pydantic error (an item of ValidationError.errors()) in glb's words; `root` is the
    validated model, whose field names feed the did-you-mean of an unknown key."""
    kind_of_error = str(error["type"])
    if kind_of_error == "extra_forbidden":
        loc = [part for part in error["loc"] if part != "[key]"]
        return "unknown key" + did_you_mean(str(loc[-1]), field_names(root, loc[:-1]))
    if kind_of_error in _MESSAGES:
        return _MESSAGES[kind_of_error](error)
    return str(error["msg"]).removeprefix("Value error, ")


def field_names(root: type[BaseModel], loc: Loc) -> list[str]:
    """The keys the model at `loc` (under `root`) accepts; [] when `loc` leads to no model."""
    if not loc:
        return list(root.model_fields)
    field = field_at(root, loc)
    model = model_in(field.annotation) if field is not None else None
    return list(model.model_fields) if model is not None else []


def field_at(root: type[BaseModel], loc: Loc) -> FieldInfo | None:
    """The field at `loc` under `root` (list indices skipped), or None when there is none."""
    model: type[BaseModel] | None = root
    field = None
    for part in loc:
        if isinstance(part, int):
            continue  # an item of a list: its model is the list's
        field = model.model_fields.get(part) if model is not None else None
        if field is None:
            return None
        model = model_in(field.annotation)
    return field


def decoded_as_json(field: FieldInfo) -> bool:
    """Whether pydantic-settings reads an environment value for `field` as JSON: a section, a
    list or a mapping, unless the field is marked NoDecode (glb parses its text itself)."""
    if NoDecode in field.metadata:
        return False
    annotation = field.annotation
    complex_origin = typing.get_origin(annotation) in (list, dict, tuple)
    return model_in(annotation) is not None or complex_origin


def model_in(annotation: object) -> type[BaseModel] | None:
    """The model an annotation holds: itself, an optional one, or a list's item."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (list, tuple, typing.Union, types.UnionType):
        for argument in typing.get_args(annotation):
            if (found := model_in(argument)) is not None:
                return found
    return None
