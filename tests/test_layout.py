"""The layout shows the architecture: stage modules on top of pipeline/, the library in packages by concern,
developer tools apart (tools import no other tool), no module over 300 lines."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import REPO
from tests.test_dvc_deps import pipeline_imports

PIPELINE = REPO / "pipeline"
LIBRARY = ("core", "data", "training", "generation", "evaluation", "reporting")


def modules_of(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.py") if p.name != "__init__.py")


def test_the_packages_are_the_library_and_the_tools():
    packages = {p.name for p in PIPELINE.iterdir() if (p / "__init__.py").is_file()}
    assert packages == {*LIBRARY, "tools"}
    for package in packages:  # each says what it holds
        assert (PIPELINE / package / "__init__.py").read_text().startswith('"""')


def test_no_tool_imports_another_tool():
    imports = {p.stem: {m for m in pipeline_imports(p) if m.startswith("pipeline.tools.")}
               for p in modules_of(PIPELINE / "tools")}
    assert {name: found for name, found in imports.items() if found} == {}


def test_the_library_imports_no_stage_and_no_tool():
    top = {f"pipeline.{p.stem}" for p in modules_of(PIPELINE)}
    offending = {}
    for package in LIBRARY:
        for path in modules_of(PIPELINE / package):
            bad = {m for m in pipeline_imports(path) if m in top or m.startswith("pipeline.tools")}
            if bad:
                offending[f"{package}/{path.name}"] = sorted(bad)
    assert offending == {}


def test_no_module_is_over_300_lines():
    sizes = {p.relative_to(REPO).as_posix(): len(p.read_text().splitlines()) for p in PIPELINE.rglob("*.py")}
    assert {path: n for path, n in sizes.items() if n > 300} == {}
