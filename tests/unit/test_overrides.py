"""`--set KEY=VALUE` overrides merged over a params file (curate/config.py load_params)."""
from pathlib import Path

import pytest

from app.cli import build_parser
from curate.config import Params, ParamsError, apply_overrides, load_params, parse_override

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = ROOT / "params" / "default.yaml"


@pytest.fixture
def params_file(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("selection:\n  rounds: 3\n  ratio: 0.1\ntraining:\n  lr: 0.001\n")
    return f


def test_nested_key_overrides_the_file_and_keeps_its_siblings(params_file):
    p = load_params(params_file, ["selection.rounds=2", "training.online.policy=adapt"])
    assert p.selection.rounds == 2 and p.selection.ratio == 0.1
    assert p.training.online.policy == "adapt" and p.training.lr == 0.001


def test_no_overrides_is_the_file(params_file):
    assert load_params(params_file, []) == load_params(params_file)
    assert load_params(DEFAULT, ()) == Params()


@pytest.mark.parametrize("text,value", [
    ("training.lr=2e-5", 2e-5),  # YAML 1.1 reads 2e-5 as a string; the model makes it the float
    ("training.lr=0.0002", 2e-4),
    ("selection.rounds=4", 4),
    ("tracking.push=false", False),
    ("scoring.system_prompt=Answer briefly: no=yes.", "Answer briefly: no=yes."),  # only the first = splits
    ("training.lora.target_modules=[q_proj, v_proj]", ["q_proj", "v_proj"]),
    ("schedule.cron='0 3 * * *'", "0 3 * * *"),
])
def test_values_are_yaml(text, value):
    key, _ = parse_override(text)
    p = load_params(None, [text])
    got = p
    for part in key.split("."):
        got = getattr(got, part)
    assert got == value


def test_yaml_types_reach_the_mapping_before_validation():
    data = apply_overrides({}, ["a.b=[1, 2]", "a.c=3", "a.d=true", "a.e=text", "a.f=1.5"])
    assert data == {"a": {"b": [1, 2], "c": 3, "d": True, "e": "text", "f": 1.5}}


def test_apply_does_not_modify_the_file_mapping():
    data = {"selection": {"rounds": 3}}
    assert apply_overrides(data, ["selection.rounds=1"]) == {"selection": {"rounds": 1}}
    assert data == {"selection": {"rounds": 3}}


def test_repeated_key_last_wins(params_file):
    assert load_params(params_file, ["selection.rounds=2", "selection.rounds=5"]).selection.rounds == 5


def test_wrong_type_names_the_dotted_key(params_file):
    with pytest.raises(ParamsError) as e:
        load_params(params_file, ["selection.rounds=many"])
    assert "selection.rounds" in str(e.value) and "--set selection.rounds=many" in str(e.value)


def test_unknown_key_names_the_dotted_key(params_file):
    with pytest.raises(ParamsError, match=r"training\.lrr: Extra inputs are not permitted"):
        load_params(params_file, ["training.lrr=0.1"])
    with pytest.raises(ParamsError, match=r"trainig: Extra inputs are not permitted"):
        load_params(params_file, ["trainig.lr=0.1"])


def test_setting_below_a_value_is_refused(params_file):
    with pytest.raises(ParamsError, match=r"selection\.rounds holds a value \(3\), not a section"):
        load_params(params_file, ["selection.rounds.max=2"])


@pytest.mark.parametrize("text", ["selection.rounds", "=3", "selection..rounds=3", ""])
def test_malformed_override_says_what_to_write(text):
    with pytest.raises(ParamsError, match="KEY=VALUE|empty part"):
        load_params(None, [text])


def test_invalid_yaml_value():
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(None, ["training.lora.target_modules=[q_proj"])


def test_every_flow_command_takes_repeatable_set():
    parser = build_parser()
    for argv in (["run"], ["resume"], ["serve"], ["stage", "score"], ["compare"]):
        args = parser.parse_args(argv + ["--set", "a.b=1", "--set", "a.b=2"])
        assert args.set == ["a.b=1", "a.b=2"]
    assert parser.parse_args(["run"]).set == []


def test_text_yaml_would_read_as_a_mapping_stays_text():
    assert parse_override("scoring.system_prompt=Note: be brief")[1] == "Note: be brief"
    assert parse_override("a.b={x: 1}")[1] == {"x": 1}


def test_switching_the_online_policy_on_the_default_file():
    p = load_params(DEFAULT, ["training.online.policy=adapt"])
    assert p.training.online.policy == "adapt" and p.training.online.tau == 1.0  # the policy's defaults
    p = load_params(DEFAULT, ["training.online.policy=adapt", "training.online.tau=2"])
    assert p.training.online.tau == 2.0
    with pytest.raises(ParamsError) as e:
        load_params(DEFAULT, ["training.online.tau=2"])
    msg = str(e.value)
    assert "--set training.online.tau=2" in msg
    assert ("training.online: Value error, tau is a parameter of policy adapt, not of uniform: remove "
            "training.online.tau, or set training.online.policy: adapt") in msg
