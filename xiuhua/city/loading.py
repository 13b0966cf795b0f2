"""Reading city data files with errors that name the file and line."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

T = TypeVar("T")


class CityDataError(ValueError):
    """City data that cannot be used; the message names file, line and field."""


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int:
    """The line (1-based) of the deepest node on the path `loc` that exists in the YAML tree."""
    line = node.start_mark.line + 1 if node is not None else 1
    for part in loc:
        at: yaml.Node | None = None  # where the entry starts: a mapping entry's key, not its (block) value
        if isinstance(node, yaml.MappingNode):
            at, nxt = next(((k, v) for k, v in node.value if getattr(k, "value", None) == str(part)), (None, None))
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            nxt = node.value[part]
        else:
            nxt = None
        if nxt is None:
            break
        node = nxt
        line = (at or node).start_mark.line + 1
    return line


def read_yaml(path: Path) -> tuple[Any, yaml.Node | None]:
    """Parse a YAML file into data and its node tree (for line numbers)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CityDataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    try:
        return yaml.safe_load(text), yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise CityDataError(f"{where}: {exc.problem or exc}") from exc


def validation_error(path: Path, node: yaml.Node | None, exc: ValidationError, prefix: tuple[Any, ...] = ()) -> str:
    """One line per problem: `file:line: field.path: message`."""
    lines = []
    for err in exc.errors():
        loc = prefix + tuple(err["loc"])
        field = ".".join(str(p) for p in loc) or "(document)"
        lines.append(f"{path}:{_line_of(node, loc)}: {field}: {err['msg']}")
    return "\n".join(lines)


def load_yaml(path: Path, model: type[T]) -> T:
    """Load and validate a YAML file into `model` (a pydantic model or any type TypeAdapter accepts)."""
    data, node = read_yaml(path)
    try:
        if isinstance(model, type) and issubclass(model, BaseModel):
            return model.model_validate(data)
        return TypeAdapter(model).validate_python(data)
    except ValidationError as exc:
        raise CityDataError(validation_error(path, node, exc)) from exc


def line_of(path: Path, loc: tuple[Any, ...]) -> str:
    """`file:line` for a path inside a YAML file (for cross-reference errors found after validation)."""
    _, node = read_yaml(path)
    return f"{path}:{_line_of(node, loc)}"
