"""The CRD's patterns as Python's re reads them.

The apiserver reads a CRD's patterns with Go's regexp (RE2), whose \\x{HHHH} Python's re spells
\\UHHHHHHHH (the name rule's classes are written that way: src/rules.rs). The chart and
integration checks validate documents against the CRD's schema with jsonschema, which compiles
patterns with Python's re.
"""

from __future__ import annotations

import re
from typing import Any

RE2_HEX = re.compile(r"\\x\{([0-9A-Fa-f]+)\}")


def python_pattern(pattern: str) -> str:
    """One RE2 pattern as Python's re reads it."""
    return RE2_HEX.sub(lambda m: "\\U%08X" % int(m.group(1), 16), pattern)


def translate_patterns(node: Any) -> None:
    """Rewrites, in place, every `pattern` of a JSON schema with `python_pattern`."""
    if isinstance(node, dict):
        if isinstance(node.get("pattern"), str):
            node["pattern"] = python_pattern(node["pattern"])
        for child in node.values():
            translate_patterns(child)
    elif isinstance(node, list):
        for child in node:
            translate_patterns(child)
