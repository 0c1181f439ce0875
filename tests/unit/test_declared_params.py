"""Stages read their parameters typed (curate/config.py `declared`): the validated values at the paths they
declare, and a KeyError for any other path."""
from __future__ import annotations

import pytest

from curate.config import Params, ScoringParams, TrainingParams, declared
from tasks.pipeline import STAGES, stage_params


def test_a_declared_section_is_its_model_and_a_field_its_type():
    p = Params.model_validate({"training": {"lr": 0.005}, "scoring": {"max_length": 99}})
    train = declared(stage_params(p, "train"))
    assert isinstance(train.training, TrainingParams) and train.training.lr == 0.005
    assert train.project.seed == p.project.seed and train.base_model.chat_template is None
    assert declared(stage_params(p, "evaluate")).scoring.max_length == 99


def test_an_undeclared_path_is_refused_by_name():
    train = declared(stage_params(Params(), "train"))
    with pytest.raises(KeyError, match="scoring.max_length"):
        train.scoring.max_length
    with pytest.raises(KeyError, match="selection"):
        train.selection


def test_every_stage_gets_a_typed_view_of_exactly_its_leaves():
    p = Params()
    for s in STAGES:
        view = declared(stage_params(p, s.name))
        for section, value in stage_params(p, s.name).items():
            assert getattr(view, section) is not None or value is None, (s.name, section)


def test_a_stage_gets_its_parameters_whatever_the_other_sections_would_say():
    """The checks across sections ran on the whole set when it was loaded: a stage's slice is typed section by
    section (scoring.contrast off is valid with the gate off, which the score stage is not handed)."""
    p = Params.model_validate({"scoring": {"contrast": False}, "selection": {"mismatch_gate": "off"}})
    view = declared(stage_params(p, "score"))
    assert view.scoring.contrast is False and isinstance(view.scoring, ScoringParams)
    with pytest.raises(KeyError, match="selection"):
        view.selection
