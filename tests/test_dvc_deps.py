"""dvc.yaml lists, for every stage, each pipeline module the stage's command imports (directly or through
other pipeline modules), so that a change of shared code reruns every stage it can affect, and no other
module, so that a change elsewhere reruns nothing. Module files, not package folders: a folder would rerun
the judge whenever the cGAN loop changed. The one folder dep is the report's Jinja2 templates."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

from tests.conftest import REPO


def pipeline_imports(path: Path) -> set[str]:
    """The ``pipeline.*`` modules one source file imports, as dotted names (``from pipeline import x`` too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.startswith("pipeline.")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "pipeline":
            names.add(node.module)
            if node.module == "pipeline":
                names |= {f"pipeline.{a.name}" for a in node.names}
    return names


def module_file(name: str) -> Path:
    path = REPO / Path(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def transitive_files(module: str) -> set[str]:
    """Repo-relative paths of ``module``'s file and every pipeline module it reaches through imports."""
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        path = module_file(name)
        if name in seen or not path.is_file():
            continue
        seen.add(name)
        todo += sorted(pipeline_imports(path))
    return {module_file(n).relative_to(REPO).as_posix() for n in seen} - {"pipeline/__init__.py"}


def stages() -> dict[str, dict]:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def test_every_stage_lists_each_module_its_command_imports():
    missing = {}
    for name, stage in stages().items():
        module = re.search(r"python -m (pipeline\.\w+)", stage["cmd"]).group(1)
        deps = [d if isinstance(d, str) else next(iter(d)) for d in stage["deps"]]
        covered = lambda f: any(f == d or f.startswith(d.rstrip("/") + "/") for d in deps)  # noqa: E731
        lacking = sorted(f for f in transitive_files(module) if not covered(f))
        if lacking:
            missing[name] = lacking
    assert missing == {}


def test_the_import_walk_finds_indirect_imports():
    files = transitive_files("pipeline.prepare")
    assert {"pipeline/prepare.py", "pipeline/data/splits.py", "pipeline/data/mnist.py"} <= files  # mnist only through data
    assert not any(f.startswith("tests/") for f in files)


def test_no_stage_lists_a_module_its_command_does_not_import():
    extra = {}
    for name, stage in stages().items():
        module = re.search(r"python -m (pipeline\.\w+)", stage["cmd"]).group(1)
        deps = [d if isinstance(d, str) else next(iter(d)) for d in stage["deps"]]
        listed = {d for d in deps if d.startswith("pipeline/") and d.endswith(".py")}
        if listed - transitive_files(module):
            extra[name] = sorted(listed - transitive_files(module))
    assert extra == {}


def test_every_dep_exists():
    deps = {d if isinstance(d, str) else next(iter(d)) for stage in stages().values() for d in stage["deps"]}
    assert sorted(d for d in deps if d.startswith("pipeline/") and not (REPO / d).exists()) == []
