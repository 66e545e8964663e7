"""The package's shape: imports point down the flow (reading and checkpoints, then analysis, the report, then the
CLI and the TensorBoard side), no two modules import each other, and nothing imports TensorFlow or torch."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
from eventlogs import layered_run

PACKAGE = Path(__file__).parent.parent / "tb_varscope_plugin"

# Each stage may import the stages at a lower rank only (and modules of its own stage). The leaves at rank 0
# are shared by all: the filesystem layer and the report's types.
RANK = {
    "filesystem": 0,
    "schema": 0,
    "startup": 0,
    "reading": 1,
    "checkpoints": 1,
    "analysis": 2,
    "report": 3,
    "rewrite": 4,
    "cli": 5,
    "server": 5,
    "command": 6,
    "__init__": 6,
    "__main__": 7,
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Project modules `path` imports, anywhere in it (a function-level import is an import too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: the package imports absolutely, so its graph reads from the text"
            # `from tb_varscope_plugin import filesystem` imports the module: the package's __init__ runs first
            # for any import of the package, so it is no edge of the graph.
            names = {f"{node.module}.{alias.name}" for alias in node.names}
            modules = {n for n in names if (PACKAGE.parent / n.replace(".", "/")).with_suffix(".py").exists()}
            found.update(names)
            if modules != names:
                found.add(node.module or "")
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {i for i in _imports(path) if i in modules and i != name} for name, path in modules.items()}


def _stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_no_import_cycles_between_project_modules():
    graph = _graph()
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append(path[path.index(target) :] + [target] if target in path else [module, target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_imports_point_down_the_flow():
    graph = _graph()
    assert all(_stage(m) in RANK for m in graph), sorted({_stage(m) for m in graph} - set(RANK))
    upward = [
        f"{module} imports {target}"
        for module, targets in graph.items()
        for target in targets
        if _stage(target) != _stage(module) and RANK[_stage(target)] >= RANK[_stage(module)]
    ]
    assert upward == []


def test_nothing_in_the_package_imports_tensorflow_or_torch():
    heavy = [
        f"{_module_name(path)} imports {name}"
        for path in PACKAGE.rglob("*.py")
        for name in _imports(path)
        if name.split(".")[0] in {"tensorflow", "torch", "keras", "tf_keras"}
    ]
    assert heavy == []


def test_starting_the_cli_or_the_plugin_loads_no_checkpoint_library():
    # h5py is only needed once a Keras file is read; loaded at start-up it costs every scan memory and time.
    code = "import sys, tb_varscope_plugin.cli, tb_varscope_plugin.server.plugin; print('h5py' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_the_command_imports_remote_back_ends_only_for_a_remote_path(tmp_path):
    """boto3 and fsspec (both installed here) are imported by TensorBoard's filesystem layer as it is imported;
    the command defers them, so a local scan loads neither, and it registers S3 all the same."""
    pytest.importorskip("boto3")
    pytest.importorskip("fsspec")
    code = (
        "import sys; from tb_varscope_plugin import command; sys.argv[1:] = ['scan', sys.argv[1], '--json'];"
        "code = command.main(); from tensorboard.compat.tensorflow_stub.io import gfile;"
        "print(code, gfile.S3_ENABLED, gfile.FSSPEC_ENABLED, 'boto3.session' in sys.modules,"
        "'fsspec.core' in sys.modules, 'h5py' in sys.modules, file=sys.stderr)"
    )
    layered_run(str(tmp_path / "run" / "events.out.tfevents.1"), "w", [3], steps=2)  # one layer: clean
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    assert result.stderr.split() == ["0", "True", "True", "False", "False", "False"]


def test_a_local_scan_does_not_import_the_filesystem_layer(tmp_path):
    """A local path is read with the very `os` calls the layer's LocalFileSystem makes (filesystem.py), so a local
    scan, clean or colliding, loads neither the layer's package (absl, TensorBoard's config protos...) nor
    `tensor_util`, which imports it."""
    code = (
        "import sys; from tb_varscope_plugin import command; sys.argv[1:] = ['scan', sys.argv[1], '--json'];"
        "code = command.main(); print(code, sorted(m for m in sys.modules"
        " if m.startswith(('tensorboard.compat.tensorflow_stub', 'tensorboard.util.tensor_util', 'absl'))),"
        " file=sys.stderr)"
    )
    layered_run(str(tmp_path / "run" / "events.out.tfevents.1"), "w", [3, 3], steps=2)  # two layers: colliding
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    assert result.stderr.split() == ["1", "[]"]


def test_only_the_filesystem_module_and_the_rewrite_stage_import_gfile():
    """Every other module reads through filesystem.py, which imports the layer lazily (see the test above)."""
    importers = sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if re.search(r"^\s*from tensorboard\.compat\.tensorflow_stub", path.read_text(encoding="utf-8"), re.M)
    )
    assert importers == ["filesystem.py", "rewrite/checkpoint_copy.py", "rewrite/event_copy.py", "rewrite/split.py"]


def test_the_check_sees_a_cycle_and_an_upward_import(tmp_path, monkeypatch):
    """The checks above pass because the package is clean, not because they cannot fail."""
    fake = tmp_path / "tb_varscope_plugin"
    (fake / "reading").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "reading" / "__init__.py").write_text("")
    (fake / "reading" / "a.py").write_text("from tb_varscope_plugin.reading import b\n")
    (fake / "reading" / "b.py").write_text("def f():\n    from tb_varscope_plugin.reading.a import x\n")
    (fake / "schema.py").write_text("from tb_varscope_plugin.reading import a\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    graph = _graph()
    assert "tb_varscope_plugin.reading.b" in graph["tb_varscope_plugin.reading.a"]
    assert "tb_varscope_plugin.reading.a" in graph["tb_varscope_plugin.reading.b"]
    with pytest.raises(AssertionError, match="reading.a"):
        test_no_import_cycles_between_project_modules()
    with pytest.raises(AssertionError, match="schema imports tb_varscope_plugin.reading"):
        test_imports_point_down_the_flow()


def test_docs_architecture_names_every_module():
    """docs/architecture.md is the map of the package: a module it does not name is a module nobody finds."""
    text = (PACKAGE.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    unnamed = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path.name != "__init__.py" and not re.search(rf"[`/]{re.escape(path.name)}`", text)
    ]
    assert unnamed == []
