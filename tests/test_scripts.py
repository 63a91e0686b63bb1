"""Tests of the tree's layering: tooling outside tests/ never depends on the test suite."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _imported(path: Path) -> set[str]:
    """Return the top-level packages a Python file imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize(("folder", "forbidden"), [
    ("scripts", {"tests"}),
    ("benchmarks", {"tests", "scripts"}),
    ("exporter", {"tests", "scripts", "benchmarks"}),
])
def test_tooling_imports_nothing_from_the_tests(folder: str, forbidden: set[str]) -> None:
    files = sorted((REPO / folder).rglob("*.py"))
    assert files
    bad = {str(f.relative_to(REPO)): sorted(_imported(f) & forbidden) for f in files}
    assert {f: names for f, names in bad.items() if names} == {}


def test_the_prometheus_stack_finds_the_repository_files() -> None:
    from scripts import promstack

    assert promstack.RULES.is_file() and promstack.AM_EXAMPLE.is_file()
    assert set(promstack.load_dashboards()) and promstack.DASHBOARDS.parent == REPO / "grafana"


def test_no_tracked_text_file_holds_a_merge_conflict_marker() -> None:
    """A merge once committed its conflict markers into CHANGELOG.md unnoticed."""
    markers = re.compile(r"^(<{7} |={7}$|>{7} )", re.MULTILINE)
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.split()
    hit = [name for name in tracked if name.endswith((".py", ".md", ".yaml", ".yml", ".toml"))
           and markers.search((REPO / name).read_text(encoding="utf-8"))]
    assert not hit


def test_no_test_module_imports_another_test_module() -> None:
    """Shared fakes live in tests/fakes*.py: a test module importing another runs its tests'
    collection twice over and hides what is shared."""
    offenders = sorted(
        f"{path.name} imports {name}"
        for path in (REPO / "tests").rglob("test_*.py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom) and node.module
        for name in [node.module.rsplit(".", 1)[-1]]
        if name.startswith("test_")
    )
    assert not offenders
