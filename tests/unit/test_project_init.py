"""`curate init DIR --model M`: the scaffolded project (curate/project_init.py)."""
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from app.cli import main
from curate.config import Params, ParamsError, load_params
from curate.project_init import PRESETS, InitError, Preset, params_yaml, preset, preset_params
from flows.dvc_yaml import render

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    here = tmp_path / "cwd"
    here.mkdir()
    monkeypatch.chdir(here)
    return here


def test_init_tiny_scaffolds_a_project_without_code(tmp_path, cwd, capsys):
    project = tmp_path / "mine"
    project.mkdir()  # an existing empty directory is fine
    assert main(["init", str(project), "--model", "tiny"]) == 0
    out = capsys.readouterr().out
    assert f"curate --project {project} run" in out and f"{project / 'data' / 'raw'}/" in out
    assert list(cwd.iterdir()) == []  # nothing written where the command ran

    assert load_params(project / "params" / "default.yaml") == Params()  # tiny = the demo's defaults
    assert (project / "data" / "raw").is_dir() and (project / "data" / "raw" / "eval").is_dir()
    assert not any((project / code).exists() for code in ("curate", "tasks", "flows"))
    assert ".curate/" in (project / ".gitignore").read_text().splitlines()
    # git and DVC with the local remote
    assert subprocess.run(["git", "rev-parse", "--git-dir"], cwd=project, capture_output=True).returncode == 0
    remotes = subprocess.run([str(BIN / "python"), "-m", "dvc", "remote", "list"], cwd=project, capture_output=True,
                             text=True, check=True).stdout
    assert remotes.split()[0] == "local" and (project / ".curate" / "dvc-remote").is_dir()
    # its dvc.yaml is the generated one, without code deps (`curate dvc-yaml --check` agrees)
    assert (project / "dvc.yaml").read_text() == render(with_code=False)
    assert main(["--project", str(project), "dvc-yaml", "--check"]) == 0


def test_dvc_yaml_has_the_demo_stages_without_code_deps():
    demo = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    mine = yaml.safe_load(render(with_code=False))["stages"]
    assert list(mine) == list(demo)
    for name, stage in mine.items():
        assert stage["cmd"] == demo[name]["cmd"] and stage["outs"] == demo[name]["outs"]
        assert stage["params"] == demo[name]["params"]
        deps = stage.get("deps", [])
        assert all(d.startswith("data/") for d in deps)
        assert deps == [d for d in demo[name].get("deps", []) if d.startswith("data/")]


def test_refuses_a_non_empty_directory(tmp_path, cwd, capsys):
    project = tmp_path / "taken"
    project.mkdir()
    (project / "notes.txt").write_text("mine")
    assert main(["init", str(project)]) == 2
    err = capsys.readouterr().err
    assert "not empty" in err and "notes.txt" in err
    assert sorted(p.name for p in project.iterdir()) == ["notes.txt"]
    # a second init over a fresh project is refused too
    assert main(["init", str(tmp_path / "fresh")]) == 0
    before = (tmp_path / "fresh" / "params" / "default.yaml").read_text()
    assert main(["init", str(tmp_path / "fresh"), "--model", "smollm2-135m-instruct"]) == 2
    assert (tmp_path / "fresh" / "params" / "default.yaml").read_text() == before


@pytest.mark.parametrize("model", sorted(PRESETS))
def test_every_preset_validates_and_reads_back(model):
    p = preset(model)
    text = params_yaml(p)
    assert Params.model_validate(yaml.safe_load(text)) == preset_params(p)
    for key, (value, _) in p.overrides.items():
        got = preset_params(p)
        for part in key.split("."):
            got = getattr(got, part)
        assert got == value, key


def test_smollm2_preset_is_commented_and_small():
    text = params_yaml(preset("smollm2-135m-instruct"))
    p = Params.model_validate(yaml.safe_load(text))
    assert p.base_model.source == "smollm2-135m-instruct" and p.training.lora.enabled
    assert p.training.lr == 2e-4 and p.scoring.max_length == p.training.max_length == 512
    assert p.selection.ratio == 64 and p.selection.rounds == 2
    line = next(x for x in text.splitlines() if x.strip().startswith("lr: 0.0002"))
    assert "[preset smollm2-135m-instruct]" in line and "(demo: 0.001)" in line
    # the other keys keep the demo's comments
    assert any(x.strip().startswith("seed: 42") and "# seeds pre-training" in x for x in text.splitlines())


def test_local_model_dir_preset(tmp_path):
    model = tmp_path / "my-model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    p = preset(str(model))
    params = preset_params(p)
    assert params.base_model.source == str(model.resolve()) and params.training.lora.enabled
    with pytest.raises(InitError, match="config.json"):
        preset(str(tmp_path / "nothing-here"))


def test_a_preset_naming_an_unknown_parameter_fails():
    with pytest.raises(ParamsError, match=r"training\.lora_rank"):
        preset_params(Preset("x", {"training.lora_rank": (8, "no such key")}))


def test_run_on_the_empty_pool_says_where_to_put_data(tmp_path, cwd):
    project = tmp_path / "empty"
    assert main(["init", str(project)]) == 0
    proc = subprocess.run([str(BIN / "curate"), "--project", str(project), "run"], capture_output=True, text=True)
    assert proc.returncode != 0 and f"raw pool {project / 'data' / 'raw'} is empty" in proc.stderr


def test_a_failed_init_leaves_no_half_made_project(tmp_path, cwd, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("GIT_DIR", str(blocker / "repo"))  # `git init` cannot create its repository there
    assert main(["init", str(tmp_path / "new")]) == 2
    assert "git init" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
    (tmp_path / "existing").mkdir()
    assert main(["init", str(tmp_path / "existing")]) == 2
    assert list((tmp_path / "existing").iterdir()) == []


def test_the_online_policies_fields_are_documented_and_a_switch_works(tmp_path):
    """The written file lists the uniform policy; the other policies' fields are comments under it."""
    text = params_yaml(preset("tiny"))
    lines = text.splitlines()
    at = lines.index(next(x for x in lines if x.strip().startswith("loss: normalized")))
    assert lines[at - 1].strip().startswith("policy: uniform")
    block = lines[at + 1:lines.index(next(x for x in lines if x.startswith("  lora:")))]
    assert block and all(x.strip().startswith("#") for x in block)
    assert any(x.strip().startswith("#   tau: 1.0") for x in block)
    f = tmp_path / "p.yaml"
    f.write_text(text)
    p = load_params(f, ["training.online.policy=filter-then-weight", "training.online.lam=2"])
    assert p.training.online.lam == 2.0 and p.training.online.keep_ratio == 0.5
