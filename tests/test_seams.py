"""The seams between the parts: production code imports neither tests nor benchmarks, one public interpreter
factory, exit codes named in one place."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

PRODUCTION = ("device", "training", "convert")


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def python_files(*folders: str) -> list[Path]:
    return sorted(path for folder in folders for path in (REPO / folder).rglob("*.py"))


@pytest.mark.parametrize("path", [p for p in python_files(*PRODUCTION) if p != REPO / "training" / "train.py"],
                         ids=lambda p: str(p.relative_to(REPO)))
def test_production_code_imports_neither_tests_nor_benchmarks(path):
    bad = {name for name in imported_modules(path) if name.split(".")[0] in ("tests", "benchmarks")}
    assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"


def test_train_py_imports_no_benchmark_module():
    assert not {n for n in imported_modules(REPO / "training" / "train.py") if n.startswith("benchmarks")}


def test_benchmarks_do_not_import_tests():
    for path in python_files("benchmarks"):
        assert not {n for n in imported_modules(path) if n.startswith("tests")}, path


def test_only_the_classifier_module_touches_the_interpreter_loader():
    for path in python_files(*PRODUCTION, "benchmarks"):
        if path != REPO / "device" / "classifier.py":
            assert "_interpreter_module" not in path.read_text(), path


def test_the_interpreter_factory_is_public_and_quiet(shipped_model, capfd):
    from device.classifier import make_interpreter

    interpreter = make_interpreter(shipped_model, num_threads=1)
    assert interpreter.get_input_details()[0]["shape"].tolist()[1:] == [48, 48, 1]
    assert "XNNPACK" not in capfd.readouterr().err  # the runtime's fd-2 line went to logging


@pytest.mark.parametrize("path", ["device/cli.py", "device/classify.py", "device/service.py"])
def test_exit_codes_are_named_constants(path):
    tree = ast.parse((REPO / path).read_text())
    bare = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Return | ast.Assign)
            and isinstance(node.value, ast.Constant) and node.value.value in (1, 2, 3)
            and not isinstance(node.value.value, bool)]
    assert not bare, f"{path}: bare exit code on line(s) {bare}; use device.exit_codes"


def test_the_live_view_page_reads_the_pipeline_only_through_its_hand_off():
    # DESIGN.md: device/web.py never imports mqtt.py; the frame loop does not import the HTTP server.
    for name in ("web", "liveview"):
        imported = imported_modules(REPO / "device" / f"{name}.py")
        assert not {n for n in imported if n.startswith(("device.mqtt", "device.pipeline", "paho"))}, name
    for name in ("pipeline", "liveview"):
        assert not {n for n in imported_modules(REPO / "device" / f"{name}.py")
                    if n.startswith(("aiohttp", "device.web"))}, name
