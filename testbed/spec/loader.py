"""Load a YAML file into a pydantic model; every error names file, line, key path and the fix.

One loader serves every file kind (network specs, scenarios): pydantic holds the schema,
this module only maps a validation error back to the YAML line it came from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from testbed.errors import SpecError

M = TypeVar("M", bound=BaseModel)


def _line_index(node: yaml.Node, path: tuple = ()) -> dict[tuple, int]:
    """Map every key path in a composed YAML document to its 1-based line."""
    index = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            index[path + (key,)] = key_node.start_mark.line + 1
            for sub, line in _line_index(value_node, path + (key,)).items():
                index.setdefault(sub, line)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            index.update(_line_index(item, path + (i,)))
    return index


def _describe(error: dict[str, Any]) -> tuple[tuple, str]:
    loc = tuple(part for part in error["loc"] if not (isinstance(part, str) and part.startswith("function-")))
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    if error["type"] == "literal_error":
        message = f"invalid value {error.get('input')!r}; {error['msg'][0].lower()}{error['msg'][1:]}"
    return loc, message


def format_validation_error(path: Path | str, exc: ValidationError, lines: dict[tuple, int], model: type[BaseModel]) -> str:
    """One line for the first error, naming file:line, the key path and the fix."""
    loc, message = _describe(exc.errors()[0])
    # walk up to the nearest located key (a missing key is reported at its parent)
    probe = loc
    while probe and probe not in lines:
        probe = probe[:-1]
    line = lines.get(probe, 1)
    key = ".".join(str(p) for p in loc) or "(top level)"
    if exc.errors()[0]["type"] == "extra_forbidden":
        allowed = _allowed_keys(model, loc[:-1])
        if allowed:
            message += f"; allowed keys: {', '.join(allowed)}"
    more = len(exc.errors()) - 1
    suffix = f" (+{more} more)" if more else ""
    return f"{path}:{line}: {key}: {message}{suffix}"


def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        current = _model_of(field.annotation)
        if current is None:
            return []
    return sorted(getattr(current, "model_fields", {}).keys())


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def parse_yaml_text(text: str, source: str) -> tuple[Any, dict[tuple, int]]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{source}:{line}: invalid YAML: {problem}") from None
    lines = _line_index(node) if node is not None else {}
    return data, lines


def read_text_file(path: Path, *, hint: str = "give the path of a YAML file") -> str:
    """A spec or scenario file's text, or one SpecError line saying why it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: file not found", hint=hint) from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot read: {exc.__class__.__name__}") from None


def load_model(path: Path | str, model: type[M], *, defaults: dict[str, Any] | None = None) -> M:
    """Read a YAML file and validate it as `model`; raise SpecError with file:line on any problem."""
    path = Path(path)
    return validate_text(read_text_file(path), str(path), model, defaults=defaults)


def validate_text(text: str, source: str, model: type[M], *, defaults: dict[str, Any] | None = None) -> M:
    data, lines = parse_yaml_text(text, source)
    if data is None:
        raise SpecError(f"{source}:1: the file is empty; expected a mapping of keys")
    if not isinstance(data, dict):
        raise SpecError(f"{source}:1: expected a mapping of keys at the top level, got {type(data).__name__}")
    if defaults:
        data = {**defaults, **data}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise SpecError(format_validation_error(source, exc, lines, model)) from None
