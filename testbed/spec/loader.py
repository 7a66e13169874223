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
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    if error["type"] == "literal_error":
        message = f"invalid value {error.get('input')!r}; {error['msg'][0].lower()}{error['msg'][1:]}"
    return loc, message


MAX_ERRORS_SHOWN = 10  # errors of one file on its one line; past that, a count


def _key_text(part: Any) -> str:
    """A key as written, or quoted with escapes when it holds anything but printable characters
    (a key with a line break must not break the one-line error)."""
    text = str(part)
    return text if text.isprintable() and text.strip() == text and text else repr(text)


def _located(error: dict[str, Any], lines: dict[tuple, int], model: type[BaseModel]) -> tuple[int, str]:
    """(line, "key: message") of one validation error."""
    loc, message = _describe(error)
    # walk up to the nearest located key (a missing key is reported at its parent)
    probe = loc
    while probe and probe not in lines:
        probe = probe[:-1]
    key = ".".join(_key_text(p) for p in loc) or "(top level)"
    if error["type"] == "extra_forbidden":
        allowed = _allowed_keys(model, loc[:-1])
        if allowed:
            message += f"; allowed keys: {', '.join(allowed)}"
    return lines.get(probe, 1), f"{key}: {message}"


def format_validation_error(path: Path | str, exc: ValidationError, lines: dict[tuple, int], model: type[BaseModel]) -> str:
    """Every error of the file on one line, in file order: the first as file:line, the others as
    `line N`, each naming the key path and the fix."""
    found = sorted((_located(e, lines, model) for e in exc.errors()), key=lambda item: item[0])
    shown = found[:MAX_ERRORS_SHOWN]
    (line, first), rest = shown[0], shown[1:]
    text = f"{path}:{line}: {first}" + "".join(f" | line {n}: {detail}" for n, detail in rest)
    more = len(found) - len(shown)
    return text + (f" (+{more} more)" if more else "")


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


MAX_FILE_BYTES = 1 << 20  # a spec or scenario is a few KiB; anything near this is a mistake
MAX_ALIASES = 64  # YAML aliases in one file: a few are handy, an alias bomb has thousands
MAX_DEPTH = 64  # nesting of mappings/sequences
MAX_VALUES = 50_000  # values in the document with every alias expanded (an alias bomb has billions)


def _check_shape(node: yaml.Node, source: str) -> None:
    """Duplicate keys (YAML keeps the last one silently), nesting past MAX_DEPTH and a document
    that expands (aliases included) to more than MAX_VALUES values are errors."""
    stack = [(node, 1)]
    values = 0
    while stack:
        current, depth = stack.pop()
        values += 1
        if values > MAX_VALUES:
            raise SpecError(f"{source}: more than {MAX_VALUES} values once YAML aliases are expanded; "
                            "write the values out")
        if depth > MAX_DEPTH:
            raise SpecError(f"{source}:{current.start_mark.line + 1}: nested deeper than {MAX_DEPTH} levels")
        if isinstance(current, yaml.MappingNode):
            seen: dict = {}
            for key_node, value_node in current.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
                if key is not None and key in seen:
                    raise SpecError(f"{source}:{key_node.start_mark.line + 1}: duplicate key {key!r} "
                                    f"(first on line {seen[key]}); keep one")
                if key is not None:
                    seen[key] = key_node.start_mark.line + 1
                stack.append((value_node, depth + 1))
        elif isinstance(current, yaml.SequenceNode):
            stack.extend((item, depth + 1) for item in current.value)


def _check_flow_depth(text: str, source: str) -> None:
    """Flow collections ([...], {...}) nested past MAX_DEPTH, found before YAML's scanner, which
    takes seconds on thousands of open brackets (outside quotes; a rough count is enough)."""
    depth, quote, line = 0, "", 1
    for char in text:
        if char == "\n":
            line += 1
        elif quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise SpecError(f"{source}:{line}: nested deeper than {MAX_DEPTH} levels")
        elif char in "]}":
            depth = max(0, depth - 1)


def _count_aliases(text: str, source: str) -> None:
    aliases = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_ALIASES:
                raise SpecError(f"{source}:{event.start_mark.line + 1}: more than {MAX_ALIASES} YAML aliases; "
                                "write the values out")


def parse_yaml_text(text: str, source: str) -> tuple[Any, dict[tuple, int]]:
    try:
        _check_flow_depth(text, source)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        _count_aliases(text, source)
        if node is not None:
            _check_shape(node, source)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{source}:{line}: invalid YAML: {problem}") from None
    except RecursionError:
        raise SpecError(f"{source}:1: nested deeper than {MAX_DEPTH} levels") from None
    except (ValueError, OverflowError) as exc:  # e.g. a 5,000-digit integer
        raise SpecError(f"{source}:1: a value cannot be read: {str(exc).split(';')[0][:120]}") from None
    lines = _line_index(node) if node is not None else {}
    return data, lines


def read_text_file(path: Path, *, hint: str = "give the path of a YAML file") -> str:
    """A spec or scenario file's text, or one SpecError line saying why it cannot be read. Only a
    regular file of at most MAX_FILE_BYTES is read (never a FIFO, a device or /dev/zero)."""
    import os
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise SpecError(f"{path}: file not found", hint=hint) from None
    except OSError as exc:
        raise SpecError(f"{path}: cannot read: {exc.strerror or exc.__class__.__name__}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SpecError(f"{path}: not a regular file", hint=hint)
        if info.st_size > MAX_FILE_BYTES:
            raise SpecError(f"{path}: {info.st_size} bytes; a spec or scenario file is at most {MAX_FILE_BYTES} bytes")
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    finally:
        os.close(fd)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecError(f"{path}: cannot read: not UTF-8 text") from None


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
    except (ValueError, OverflowError, RecursionError) as exc:  # raised past pydantic (e.g. float('1e400') to int)
        raise SpecError(f"{source}:1: a value cannot be used: {exc.__class__.__name__}: {str(exc)[:120]}") from None
