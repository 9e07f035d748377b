"""The small-validation rule (archlab.train.small_data): when a run may select on its val split."""

import math

import pytest

from archlab.train import TrainConfig
from archlab.train.small_data import MIN_VAL_FOR_SELECTION, accuracy_standard_error, apply_policy, selection_policy


def test_threshold_is_where_one_sample_moves_accuracy_by_two_points():
    assert MIN_VAL_FOR_SELECTION == 50
    assert 100 / (MIN_VAL_FOR_SELECTION - 1) > 2 >= 100 / MIN_VAL_FOR_SELECTION
    assert accuracy_standard_error(50, 0.8) == pytest.approx(math.sqrt(0.16 / 50))
    assert accuracy_standard_error(0) == float("inf")


@pytest.mark.parametrize("n_val", [1, 3, 20, MIN_VAL_FOR_SELECTION - 1])
def test_tiny_val_keeps_last_weights_by_default(n_val):
    policy = selection_policy(n_val, TrainConfig.build({}))
    assert not policy.select_on_val
    assert policy.overrides == {"restore_best": False}
    assert f"{n_val} validation samples" in policy.reason and "last weights" in policy.reason


def test_tiny_val_drops_early_stopping_not_asked_for_here():
    # A resumed run's config holds every field; the caller passes which ones the user set.
    policy = selection_policy(10, TrainConfig.build({"patience": 5}), explicit=set())
    assert not policy.select_on_val
    assert policy.overrides == {"restore_best": False, "patience": None}


def test_large_val_selects_as_configured():
    policy = selection_policy(MIN_VAL_FOR_SELECTION, TrainConfig.build({}))
    assert policy.select_on_val and policy.overrides == {}
    policy = selection_policy(500, TrainConfig.build({"restore_best": False}))
    assert not policy.select_on_val and policy.overrides == {}


@pytest.mark.parametrize("explicit", [{"restore_best": True}, {"patience": 3}])
def test_explicit_request_is_kept_with_a_warning_reason(explicit):
    policy = selection_policy(3, TrainConfig.build(explicit))
    assert policy.select_on_val and policy.overrides == {}
    assert "explicitly" in policy.reason and next(iter(explicit)) in policy.reason


def test_no_val_split():
    policy = selection_policy(0, TrainConfig.build({}))
    assert not policy.select_on_val and "no validation split" in policy.reason


def test_apply_policy_returns_the_config_to_run():
    cfg = TrainConfig.build({"lr": 0.01})
    new, policy = apply_policy(cfg, 3)
    assert new.restore_best is False and new.patience is None and new.lr == 0.01
    assert cfg.restore_best is True  # the input is not changed
    same, _ = apply_policy(cfg, 100)
    assert same is cfg
    assert policy.to_dict()["min_val_for_selection"] == MIN_VAL_FOR_SELECTION
