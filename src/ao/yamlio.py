"""Reading YAML that people (or other programs) wrote: no aliases (a few lines of anchors can
expand to gigabytes), keys that are plain scalars, text that is UTF-8, and a size bound."""

from __future__ import annotations

from typing import Any

import yaml
from yaml.events import AliasEvent

MAX_BYTES = 2 * 1024 * 1024  # a plan or config beyond this is a mistake, not a plan
MAX_DEPTH = 100


class YamlRefused(ValueError):
    """Input the loader will not read, with a one-line reason."""


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases and non-scalar keys and records keys written twice."""

    duplicates: list[tuple[str, int]]

    depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise YamlRefused(f"line {event.start_mark.line + 1}: YAML aliases (*{event.anchor})"
                              " are not accepted; write the value out")
        # nesting is bounded before Python's recursion limit is (5,000 `[` ended in a
        # RecursionError traceback): no plan or config nests anywhere near this
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise YamlRefused(f"line {mark.line + 1}: nested more than {MAX_DEPTH} "
                                  "levels deep")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _construct_mapping(loader: StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[object] = set()
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            raise YamlRefused(f"line {key_node.start_mark.line + 1}: a key must be a plain "
                              "value, not a list or a mapping")
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            loader.duplicates.append((str(key), key_node.start_mark.line + 1))
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load(data: bytes | str) -> tuple[Any, list[tuple[str, int]]]:
    """(the document, keys written twice with their lines). Raises YamlRefused for what we do
    not read and yaml.YAMLError for broken syntax."""
    if len(data) > MAX_BYTES:
        raise YamlRefused(f"{len(data) // 1024} KB is more than the {MAX_BYTES // 1024} KB "
                          "accepted")
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise YamlRefused(f"not UTF-8 text (byte {e.start})") from None
    loader = StrictLoader(data)
    loader.duplicates = []
    try:
        return loader.get_single_data(), loader.duplicates
    finally:
        loader.dispose()
