"""Every Python example in the docs runs, so the docs cannot drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)

# Examples that need a live Redis server are shown, not run here; the Redis tests cover
# the same calls.
NEEDS_REDIS = "redis.Redis.from_url"


def examples() -> list[pytest.ParameterSet]:
    found = []
    for page in sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")]):
        for number, match in enumerate(PYTHON_BLOCK.finditer(page.read_text()), start=1):
            code = match.group(1)
            if NEEDS_REDIS in code:
                continue
            found.append(pytest.param(code, id=f"{page.name}-{number}"))
    return found


@pytest.mark.parametrize("code", examples())
def test_docs_example_runs(code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    exec(compile(code, "<docs example>", "exec"), {"__name__": "docs_example"})
