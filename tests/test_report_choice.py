"""report/choice.py: the select step's candidate rows, typed, read back from design.json (the
current layout, and the one written before the search had trials) or refused in one line."""

from __future__ import annotations

import json

import pytest

from archlab.errors import ConfigError
from archlab.report.choice import CHOICE_COLUMNS, CandidateRow, choice_rows, design_choice
from archlab.report.report_data import DesignReport

TRIAL = {
    "name": "mlp_tabular #3",
    "preset": "mlp_tabular",
    "trial": 3,
    "family": "mlp",
    "rank": 1,
    "params": 2953,
    "latency_ms": 0.07,
    "fits": True,
    "metric": "val_accuracy",
    "mode": "max",
    "value": 0.91,
    "reached": 0.91,
    "state": "complete",
    "recipe": {"width": 1.0, "lr_mult": 0.5},
    "trained": True,
    "error": None,
    "cv": {"k": 2},
    "pareto": True,
}
PRUNED = {**TRIAL, "name": "cnn_1d #4", "preset": "cnn_1d", "trial": 4, "value": None, "reached": 0.6}
PRUNED.update(state="pruned", trained=False)
del PRUNED["pareto"]  # the select step compares trained trials only
# a row of a design written before the search: one per sized candidate, with its sizing note
SIZED = {"name": "mlp_bn_dropout", "family": "mlp", "rank": 2, "params": 19858, "fits": False, "sizing": "too big"}


def _design(tmp_path, rows, winner_trial=3):
    select = {"winner": "mlp_tabular", "winner_trial": winner_trial, "metric": "val_accuracy", "mode": "max"}
    manifest = {"schema_version": 1, "steps": {"select": {"state": "done", "result": {**select, "rows": rows}}}}
    (tmp_path / "design.json").write_text(json.dumps(manifest))
    rep = DesignReport(title="t", subject=str(tmp_path), kind="design", model="mlp_tabular", created="now")
    design_choice(rep, tmp_path)
    return rep


def test_a_row_round_trips_and_an_untrained_one_is_off_the_front():
    assert CandidateRow.from_dict(TRIAL).to_dict() == TRIAL
    pruned = CandidateRow.from_dict(PRUNED)
    assert pruned.pareto is None and pruned.value is None and pruned.reached == 0.6


def test_the_candidates_table_reads_the_rows_by_type(tmp_path):
    rep = _design(tmp_path, [TRIAL, PRUNED])
    rows = choice_rows(rep)
    assert [len(r) for r in rows] == [len(CHOICE_COLUMNS)] * 2
    assert rows[0][0] == "mlp_tabular #3" and rows[0][5] == "0.91" and rows[0][6:] == ["yes", "chosen"]
    assert rows[1][5] == "0.6" and rows[1][6:] == ["", "pruned early"]
    assert {"choice_pareto", "choice_history"} <= set(rep.figures)
    assert rep.choice["rows"] == [TRIAL, PRUNED]  # the report's JSON repeats design.json


def test_a_design_from_before_the_search_still_reads(tmp_path):
    row = CandidateRow.from_dict(SIZED)
    assert (row.name, row.trial, row.recipe, row.state) == ("mlp_bn_dropout", None, {}, None)
    assert "sizing" not in row.to_dict()
    rep = _design(tmp_path, [SIZED], winner_trial=None)
    assert choice_rows(rep)[0][-1] == "over budget: not trained"


@pytest.mark.parametrize("bad", [{"preset": "mlp_tabular"}, "mlp_tabular", {"name": 3}])
def test_a_malformed_row_is_refused_in_one_line(tmp_path, bad):
    with pytest.raises(ConfigError, match=r"^design\.json: a candidate row needs a 'name' string; got ") as err:
        _design(tmp_path, [TRIAL, bad])
    assert "\n" not in str(err.value)
