"""The package's layers and size rules, checked on the source (kopf writes its layers down in
`.importlinter`; this is the same contract as a test, with no extra tool).

Every `import` statement counts, also those inside functions (the lazy ones), so a layer cannot
hide a forbidden dependency behind a deferred import.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "trainer"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module an `import` in `path` names (relative imports resolved)."""
    tree = ast.parse(path.read_text())
    package = (
        module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else module_name(path)
    )
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def modules_under(*prefixes: str) -> list[Path]:
    files = sorted(PACKAGE.rglob("*.py"))
    return [f for f in files if any(module_name(f).startswith(p) for p in prefixes)]


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


# (who, must not import any of, why)
LAYERS = [
    (
        ("trainer.rl", "trainer.envs", "trainer.games"),
        ("trainer.kube", "trainer.launcher", "trainer.cli", "mlflow", "kubernetes"),
        "the RL layers never touch Kubernetes, the CLI or MLflow (tracking/ talks to MLflow)",
    ),
    (
        ("trainer.spec",),
        (
            "trainer.rl",
            "trainer.envs",
            "trainer.games",
            "trainer.tracking",
            "trainer.kube",
            "trainer.launcher",
            "trainer.cli",
            "trainer.sweep",
            "torch",
            "pyboy",
            "mlflow",
        ),
        "spec/ imports nothing of ours but trainer.errors",
    ),
    (
        ("trainer.kube", "trainer.launcher", "trainer.sweep"),
        (
            "torch",
            "pyboy",
            "mlflow",
            "trainer.rl",
            "trainer.envs",
            "trainer.games",
            "trainer.tracking",
        ),
        "the launcher starts fast: no torch, PyBoy or MLflow",
    ),
    (
        ("trainer.kube.manifests", "trainer.kube.chart", "trainer.sweep"),
        ("kubernetes", "trainer.kube.client"),
        "manifests are pure functions of the spec: no API client",
    ),
    (
        (
            "trainer.report",
            "trainer.tracking.queries",
            "trainer.tracking.client",
            "trainer.metrics",
        ),
        ("torch", "pyboy", "trainer.rl", "trainer.envs", "trainer.tracking.checkpoints"),
        "`trainer compare` imports no torch",
    ),
    (
        ("trainer.cli.kubernetes", "trainer.cli.common", "trainer.cli"),
        ("torch", "pyboy", "trainer.rl", "trainer.envs", "trainer.tracking"),
        "the CLI's Kubernetes commands and its start-up import no torch",
    ),
    (
        ("trainer.errors", "trainer.metrics"),
        ("trainer.spec", "trainer.rl", "trainer.envs", "trainer.kube", "trainer.tracking"),
        "leaf modules every layer may import",
    ),
]


def _layer_files(who: tuple[str, ...]) -> list[Path]:
    # A rule for a package covers its modules; "trainer.cli" alone means its __init__ only.
    files = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        if any(name == w or (name.startswith(w + ".") and w != "trainer.cli") for w in who):
            files.append(path)
    return files


@pytest.mark.parametrize("who, forbidden, why", LAYERS, ids=[rule[2] for rule in LAYERS])
def test_layers_import_only_downward(who, forbidden, why):
    files = _layer_files(who)
    assert files, f"no modules found for {who}"
    offences = [
        f"{module_name(path)} imports {name}"
        for path in files
        for name in sorted(imports_of(path))
        if any(_matches(name, prefix) for prefix in forbidden)
    ]
    assert not offences, f"{why}:\n" + "\n".join(offences)


def test_only_tracking_imports_mlflow():
    offences = [
        f"{module_name(path)} imports {name}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if not module_name(path).startswith("trainer.tracking")
        for name in imports_of(path)
        if _matches(name, "mlflow")
    ]
    assert not offences, "only trainer/tracking/ talks to MLflow:\n" + "\n".join(offences)


def test_compare_and_kubernetes_commands_load_no_torch_at_run_time():
    """What the AST cannot see (a re-export, an import inside an imported module's function
    that runs at import): import what `trainer compare` and the Kubernetes commands import."""
    code = (
        "import sys\n"
        "import trainer.cli, trainer.report, trainer.tracking.queries, trainer.launcher\n"
        "import trainer.kube.manifests, trainer.kube.client, trainer.kube.chart, trainer.sweep\n"
        "print(','.join(sorted(m for m in ('torch', 'pyboy') if m in sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == "", f"imported: {result.stdout.strip()}"


MODULE_LINES, FUNCTION_LINES, RL_FUNCTION_LINES = 500, 80, 60
REASON = "Longer than 500 lines because"


def test_modules_and_functions_stay_small():
    """No module over ~500 lines without a reason at its top; no function over 80 lines (60 in
    rl/, where a CleanRL reader should see each phase at a glance)."""
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        tree = ast.parse(text)
        lines = len(text.splitlines())
        if lines > MODULE_LINES and REASON not in (ast.get_docstring(tree) or ""):
            problems.append(f"{path.relative_to(ROOT)}: {lines} lines and no '{REASON} …'")
        limit = RL_FUNCTION_LINES if module_name(path).startswith("trainer.rl") else FUNCTION_LINES
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > limit:
                    problems.append(
                        f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {length} lines > {limit}"
                    )
    assert not problems, "\n".join(problems)


def test_the_rules_see_lazy_imports(tmp_path):
    """The checker itself: an import inside a function is found."""
    probe = PACKAGE / "rl" / "setup.py"
    assert "trainer.envs.env" in imports_of(probe)
    lazy = PACKAGE / "rl" / "train.py"
    assert "trainer.tracking.mlflow_run" in imports_of(lazy)
