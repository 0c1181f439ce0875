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


def test_llama3_8b_params_reproduce_the_paper_setup_without_downloading():
    p = load_params(ROOT / "params" / "iterit-llama3-8b.yaml")
    assert p.base_model.source == "meta-llama/Meta-Llama-3-8B" and p.base_model.dtype == "bfloat16"
    assert (p.selection.strategy, p.selection.mode, p.selection.rounds) == ("iterit", "faithful", 3)
    assert (p.selection.ratio, p.selection.update_ratio, p.selection.decay) == (0.05, 3, 0.1)
    t = p.training
    assert (t.lr, t.schedule, t.warmup_ratio, t.batch_size * t.grad_accum) == (2e-5, "cosine", 0.03, 32)
    assert p.scoring.precision == "bf16" and not p.base_model.trust_remote_code


@pytest.mark.parametrize("section,key,value", [("raw", "dir", "../elsewhere"), ("raw", "eval_dir", "/etc"),
                                               ("tracking", "dvc_remote", "data/../../x")])
def test_paths_from_params_cannot_escape_the_project(tmp_path, section, key, value):
    f = tmp_path / "p.yaml"
    f.write_text(f"{section}:\n  {key}: {value}\n")
    with pytest.raises(ParamsError, match="inside the project"):
        load_params(f)


def test_the_mismatch_gate_without_contrast_scores_fails_fast():
    """Without contrast scores every margin is NaN and the gate would make every row ineligible."""
    for gate in ("on", "auto"):
        with pytest.raises(ValueError, match="scoring.contrast: true, or selection.mismatch_gate: off"):
            Params.model_validate({"scoring": {"contrast": False}, "selection": {"mismatch_gate": gate}})
    Params.model_validate({"scoring": {"contrast": False}, "selection": {"mismatch_gate": "off"}})
    Params.model_validate({"scoring": {"contrast": False}, "selection": {"mode": "faithful"}})
