"""RunDir and DesignDir spell the run-directory file names: the engine writes where they say,
and the runs layer, the CLI, the report, the subject resolver and the training loops spell none
of those names themselves."""

import ast
from pathlib import Path

import pytest

import archlab
import archlab.runs.training as training
from archlab.rundir import DesignDir, RunDir

SRC = Path(archlab.__file__).parent
#: the modules that must go through RunDir / DesignDir for every run-file name
OWNERS = [
    *sorted((SRC / "runs").glob("*.py")),
    *sorted((SRC / "cli").glob("*.py")),
    *sorted((SRC / "report").glob("*.py")),
    SRC / "subject.py",
    SRC / "analysis" / "_prepare.py",
    SRC / "bench" / "source.py",
    SRC / "train" / "loop.py",
    SRC / "train" / "stacked.py",
    SRC / "train" / "stacked_ckpt.py",
]
#: the same text naming something else: ``archlab report``'s default output, in the working directory
NOT_RUN_FILES = {("report.py", "report.html"), ("output.py", "report.html")}


def _file_names(cls: type) -> set[str]:
    """The names a layout class spells that carry an extension (``"last"`` is also a word)."""
    return {v for k, v in vars(cls).items() if k.isupper() and isinstance(v, str) and "." in v}


def _literals(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every string constant in ``path`` that is not a docstring."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


@pytest.mark.parametrize("path", OWNERS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_run_file_name_is_spelled_outside_the_layout(path):
    names = _file_names(RunDir) | _file_names(DesignDir)
    found = [
        f"{path.name}:{line}: {text!r}"
        for line, text in _literals(path)
        if text in names and (path.name, text) not in NOT_RUN_FILES
    ]
    assert not found, "spell these through RunDir / DesignDir: " + "; ".join(found)


def test_layout_names_are_distinct_where_they_share_a_directory():
    run = [RunDir.CONFIG, RunDir.DATA_INFO, RunDir.METRICS, RunDir.FINAL_METRICS, RunDir.CURVES, RunDir.LAUNCH]
    run += [RunDir.MLFLOW, RunDir.TENSORBOARD, RunDir.LAST, RunDir.BEST, RunDir.SAMPLES, RunDir.REPORT]
    group = [RunDir.GROUP, RunDir.CV_SUMMARY, RunDir.SEEDS_SUMMARY, RunDir.STACK, RunDir.STACK_DIR]
    design = [v for k, v in vars(DesignDir).items() if k.isupper()]
    for names in (run, group, design):
        assert len(set(names)) == len(names)
    assert set(RunDir.SUMMARIES.values()) == {RunDir.CV_SUMMARY, RunDir.SEEDS_SUMMARY}


def test_a_run_is_written_where_rundir_says(tmp_path, monkeypatch):
    monkeypatch.setattr(training, "_draw_curves", lambda *a, **k: None)  # drawing is tested elsewhere
    result = archlab.fit(
        "mlp_tabular",
        "iris",
        max_steps=4,
        batch_size=32,
        eval_every=2,
        checkpoint_every=2,
        precision="fp32",
        device="cpu",
        model_overrides={"hidden_sizes": [8]},
        out_dir=tmp_path,
        run_name="r",
    )
    run = RunDir(result.run_dir)
    assert run.path == tmp_path / "r"
    for path in (run.config_path, run.data_info_path, run.metrics_file, run.final_metrics_path):
        assert path.is_file(), path
    assert run.has_config and run.read_config()["model"]["name"] == "mlp_tabular"
    assert run.last.is_dir() and (run.path / result.metrics["weights"]).is_dir()
    assert training.finished(run.path)["step"] == 4
    assert not RunDir(tmp_path / "nothing").has_config
