"""Shared by the hostile-input suites: walking a parsed YAML document."""

from __future__ import annotations


def key_paths(node, prefix=()):
    """Every path (tuple of keys and indices) in a document of dicts and lists, the root first."""
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from key_paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from key_paths(value, prefix + (i,))
