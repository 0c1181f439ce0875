from pathlib import Path

import pytest
import yaml

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


def test_the_default_file_lists_only_the_uniform_policy():
    """The other policies' fields are documented as comments: switching the policy needs no cleanup."""
    online = yaml.safe_load((ROOT / "params" / "default.yaml").read_text())["training"]["online"]
    assert online == {"policy": "uniform", "loss": "normalized"}


def test_a_field_of_another_policy_names_its_policy_and_the_fix(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("training:\n  online:\n    policy: greats\n    keep_ratio: 0.25\n    tau: 2\n")
    with pytest.raises(ParamsError) as e:
        load_params(f)
    msg = str(e.value)
    assert "training.online: " in msg and "greats" not in msg.split("training.online: ")[0]
    assert ("tau is a parameter of policy adapt, not of greats: remove training.online.tau, "
            "or set training.online.policy: adapt") in msg
    assert "keep_ratio" not in msg  # greats reads keep_ratio
    f.write_text("training:\n  online:\n    policy: greats\n    keep_ratio: 0.25\n")
    assert load_params(f).training.online.keep_ratio == 0.25


def test_online_errors_name_the_dotted_path_without_the_policy_tag(tmp_path):
    f = tmp_path / "p.yaml"
    for body, expected in (("policy: adapt\n    tau: warm", "  training.online.tau: Input should be a valid number"),
                           ("policy: adapt\n    temperature: 2", "  training.online.temperature: Extra inputs"),
                           ("policy: best", "  training.online: training.online.policy must be one of uniform, "
                                            "random-in-batch, greats, filter-then-weight, adapt")):
        f.write_text(f"training:\n  online:\n    {body}\n")
        with pytest.raises(ParamsError) as e:
            load_params(f)
        assert expected in str(e.value), str(e.value)


def test_auto_settings_are_resolved_by_the_params():
    from curate.config import AdaptOnline

    assert AdaptOnline(signal="bm25").standardize_on and not AdaptOnline(signal="embed").standardize_on
    assert AdaptOnline(signal="embed", standardize="on").standardize_on
    assert not AdaptOnline(signal="bm25", standardize="off").standardize_on
    assert Params().selection.gate_on and not Params().selection.revisit_on  # clean mode
    faithful = Params.model_validate({"selection": {"mode": "faithful"}}).selection
    assert not faithful.gate_on and faithful.revisit_on


def test_execution_section_is_validated(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("execution:\n  runner: dask\n  shards: 4\n  address: tcp://10.0.0.5:8786\n")
    e = load_params(f).execution
    assert (e.runner, e.shards, e.address, e.workers) == ("dask", 4, "tcp://10.0.0.5:8786", 2)
    for bad, key in (("runner: spark", "execution.runner"), ("shards: 0", "execution.shards"),
                     ("workers: 0", "execution.workers"), ("threads_per_worker: 0", "execution.threads_per_worker")):
        f.write_text(f"execution:\n  {bad}\n")
        with pytest.raises(ParamsError, match=key):
            load_params(f)
    f.write_text("execution:\n  address: tcp://10.0.0.5:8786\n")  # a scheduler without the dask runner
    with pytest.raises(ParamsError, match="execution.runner: dask or ray"):
        load_params(f)
    f.write_text("execution:\n  runner: ray\n  address: ray://head:10001\n")
    assert load_params(f).execution.runner == "ray"


@pytest.mark.parametrize("overrides", [["selection.ratio=.inf"], ["selection.ratio=.nan"], ["training.lr=.inf"],
                                       ["selection.mismatch_margin=.nan"], ["selection.update_ratio=-.inf"],
                                       ["training.online.policy=adapt", "training.online.tau=.inf"]])
def test_no_parameter_takes_infinity_or_nan(overrides):
    key = overrides[-1].split("=")[0]
    with pytest.raises(ParamsError) as error:
        load_params(None, overrides)
    assert f"{key}: Input should be a finite number" in str(error.value)


def test_a_ratio_over_one_is_a_whole_count_of_rows():
    assert load_params(None, ["selection.ratio=12"]).selection.ratio == 12
    with pytest.raises(ParamsError, match=r"selection.ratio 1.5: .* whole number \(e.g. 2\)"):
        load_params(None, ["selection.ratio=1.5"])


def test_a_comparison_budget_is_finite():
    from curate.compare.spec import CompareSpec

    with pytest.raises(ValueError, match="finite"):
        CompareSpec.model_validate({"pools": {"p": {"size": 10}}, "seeds": [1], "strategies": {"random": {}},
                                    "budget": float("inf")})


@pytest.mark.parametrize("text", ["", "\n", "# selection:\n#   ratio: 0.2\n"])
def test_an_empty_params_file_is_refused_naming_it(tmp_path, text):
    f = tmp_path / "mine.yaml"
    f.write_text(text)
    with pytest.raises(ParamsError, match=r"mine.yaml holds nothing \(it is empty or only comments\)"):
        load_params(f)
    f.write_text("{}\n")  # the defaults, on purpose
    assert load_params(f) == Params()
