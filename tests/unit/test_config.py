from pathlib import Path

import pytest

from curate.config import Params, ParamsError, load_params

ROOT = Path(__file__).resolve().parents[2]


def test_default_yaml_equals_code_defaults():
    assert load_params(ROOT / "params" / "default.yaml") == Params()


def test_unknown_key_fails_with_dotted_path(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("selection:\n  ratoi: 0.1\n")
    with pytest.raises(ParamsError, match="selection.ratoi"):
        load_params(f)


def test_wrong_type_and_range(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("selection:\n  strategy: best\n  decay: 2\n")
    with pytest.raises(ParamsError) as e:
        load_params(f)
    assert "selection.strategy" in str(e.value) and "selection.decay" in str(e.value)


def test_missing_file_says_what_to_pass(tmp_path):
    with pytest.raises(ParamsError, match="--params"):
        load_params(tmp_path / "nope.yaml")


def test_slice_is_json():
    s = Params().slice("selection", "project")
    assert set(s) == {"selection", "project"} and s["selection"]["strategy"] == "iterit"
