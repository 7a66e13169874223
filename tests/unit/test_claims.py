"""The README's "tested" claims each have a row in docs/claims.md, and every test that row names exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)(?:::(\w+))?`")


def _table(text: str, header: str) -> list[list[str]]:
    """Rows (cells stripped) of the markdown table whose header line starts with `header`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split(" | ")])
    return rows


def test_every_tested_readme_row_is_in_the_claims_table_with_tests_that_exist():
    readme = _table((ROOT / "README.md").read_text(), "| piece | state here |")
    claims = {row[0]: row for row in _table((ROOT / "docs" / "claims.md").read_text(), "| capability |")}
    tested = [piece for piece, state in readme if "tested" in state]
    assert tested, "the README's table was not found"
    missing = [piece for piece in tested if piece not in claims]
    assert not missing, f"README rows that say 'tested' but have no row in docs/claims.md: {missing}"
    for piece in tested:
        references = REFERENCE.findall(claims[piece][1])
        assert references, f"docs/claims.md names no test for {piece!r}"
        for path, name in references:
            source = ROOT / path
            assert source.is_file(), f"{piece!r}: {path} does not exist"
            if name:
                assert re.search(rf"^(def|class) {name}\b|^{name} = ", source.read_text(), re.M), \
                    f"{piece!r}: {path} has no test {name}"
