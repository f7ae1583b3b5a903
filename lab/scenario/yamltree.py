"""Scenario files as bounded YAML: bytes read only from a regular file of modest size, then
composed into plain Python data with the line of every key path, within limits on nesting,
node count, alias expansion and tags, so that a hostile file (an alias bomb, a FIFO, a
symlink to /dev/zero, `!!python/name:` tags, a self-referencing alias) ends in one
`Problem` per line instead of a hang, a traceback or gigabytes of memory.

A real scenario is 2-5 KB with a few hundred YAML nodes, nested six levels deep; the bounds
leave two orders of magnitude of room.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

from lab.errors import Problem, ScenarioError

KeyPath = tuple[str | int, ...]

MAX_FILE_BYTES = 256 * 1024
MAX_DEPTH = 32
MAX_NODES = 20_000  # composed YAML nodes
MAX_VALUES = 50_000  # values after aliases are expanded (an alias bomb stops here)

_CORE = "tag:yaml.org,2002:"
# The tags plain YAML resolves to; explicit others (!!binary, !!set, !vault, !!python/...)
# have no meaning in a scenario.
_ALLOWED_TAGS = {
    f"{_CORE}{name}" for name in ("null", "bool", "int", "float", "str", "timestamp", "map", "seq")
}
_MERGE_TAG = f"{_CORE}merge"


def read_scenario_text(path: Path) -> str:
    """The text of a scenario file, refusing anything but a regular file of modest size.

    Opened non-blocking so that a FIFO cannot hang the open, and checked with fstat on
    the open descriptor so that a symlink to a device is refused, not read forever.
    """
    name = str(path)
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as error:
        raise _error(name, None, f"cannot read: {error.strerror or error}") from None
    mode = os.fstat(descriptor).st_mode
    if not stat.S_ISREG(mode):
        os.close(descriptor)
        raise _error(name, None, f"not a regular file ({_file_kind(mode)}); cannot read it")
    with os.fdopen(descriptor, "rb") as stream:
        data = stream.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise _error(
            name, None, f"larger than {MAX_FILE_BYTES // 1024} KiB; a scenario is a few KB"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise _error(
            name, line, f"not UTF-8 text: byte 0x{data[error.start]:02x} cannot be decoded"
        ) from None


def compose(text: str, filename: str) -> tuple[Any, dict[KeyPath, int]]:
    """Plain data (dicts, lists, scalars) and the 1-based line of every key path."""
    try:
        loader = _BoundedLoader(text)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except _LimitExceeded as limit:
        raise _error(filename, limit.line, limit.message) from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        reason = error.problem or error.context or "invalid YAML"
        if error.problem and error.context:
            reason = f"{error.problem} ({error.context})"
        raise _error(filename, mark.line + 1 if mark else None, f"invalid YAML: {reason}") from None
    except yaml.reader.ReaderError as error:
        line = text.count("\n", 0, error.position) + 1
        character = error.character
        shown = f"U+{character:04X}" if isinstance(character, int) else repr(character)
        raise _error(filename, line, f"invalid YAML: character {shown} is not allowed") from None
    except yaml.YAMLError as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise _error(filename, None, f"invalid YAML: {first}") from None
    if root is None:
        raise _error(filename, 1, "the file is empty")
    builder = _Builder(filename)
    try:
        data = builder.build(root, ())
    except _LimitExceeded as limit:
        raise _error(filename, limit.line, limit.message) from None
    if builder.problems:
        raise ScenarioError(builder.problems)
    return data, builder.lines


class _LimitExceeded(Exception):
    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's composer with a depth and node budget (it recurses once per level)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        line = self.peek_event().start_mark.line + 1  # type: ignore[no-untyped-call]
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise _LimitExceeded(line, f"more than {MAX_NODES} YAML values; a scenario is small")
        if self._depth >= MAX_DEPTH:
            raise _LimitExceeded(line, f"nested deeper than {MAX_DEPTH} levels")
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _Builder:
    """Walks the composed nodes into plain data, expanding aliases within the bounds."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.lines: dict[KeyPath, int] = {}
        self.problems: list[Problem] = []
        self._values = 0
        self._active: set[int] = set()  # nodes being built: an alias to one is a cycle
        self._constructor = yaml.SafeLoader("")

    def build(self, node: yaml.Node, path: KeyPath) -> Any:
        line = node.start_mark.line + 1
        self._values += 1
        if self._values > MAX_VALUES:
            raise _LimitExceeded(line, f"aliases expand to more than {MAX_VALUES} values")
        if id(node) in self._active:
            raise _LimitExceeded(line, "an alias refers to a node that contains it")
        if len(path) > MAX_DEPTH:
            raise _LimitExceeded(line, f"nested deeper than {MAX_DEPTH} levels (via aliases)")
        self.lines[path] = line
        if node.tag not in _ALLOWED_TAGS:
            self._problem(line, path, f"unsupported tag {_short_tag(node.tag)}")
            return None
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, path)
        self._active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
            return [self.build(item, (*path, index)) for index, item in enumerate(node.value)]
        finally:
            self._active.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, path: KeyPath) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == _MERGE_TAG:
                self._problem(line, path, "merge keys ('<<') are not supported; write the keys")
                continue
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag not in _ALLOWED_TAGS:
                self._problem(line, path, "a key must be a plain value")
                continue
            key = self._scalar(key_node, path)
            if key in result:
                self._problem(line, (*path, key), "duplicate key")
                continue
            result[key] = self.build(value_node, (*path, key))
            self.lines[(*path, key)] = line
        return result

    def _scalar(self, node: yaml.ScalarNode, path: KeyPath) -> Any:
        try:
            return self._constructor.construct_object(node, deep=True)
        except Exception:  # PyYAML's constructors raise ValueError, TypeError and their own
            self._problem(
                node.start_mark.line + 1,
                path,
                f"cannot read {node.value[:40]!r} as {_short_tag(node.tag)}",
            )
            return None

    def _problem(self, line: int, path: KeyPath, message: str) -> None:
        self.problems.append(Problem(self.filename, line, dotted(path), message))


def dotted(path: KeyPath) -> str:
    """`nodes.dns.zones.example.net.records[1]`: list indexes in brackets, integer mapping
    keys (router ports, marked as `MappingKey`) as keys."""
    text = ""
    for part in path:
        is_index = isinstance(part, int) and not isinstance(part, MappingKey)
        text += f"[{part}]" if is_index else f".{part}"
    return text.lstrip(".")


class MappingKey(int):
    """An integer used as a mapping key, not a list index (for display only)."""


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_CORE) :] if tag.startswith(_CORE) else tag


def _file_kind(mode: int) -> str:
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((name for test, name in kinds if test(mode)), "not a file")


def _error(filename: str, line: int | None, message: str) -> ScenarioError:
    return ScenarioError([Problem(filename, line, "", message)])
