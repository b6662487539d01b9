import subprocess
import sys

from typer.testing import CliRunner

from agentsd.cli import app

runner = CliRunner()


def test_help_does_not_import_torch():
    code = "import sys; from agentsd.cli import app; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
    r = subprocess.run([sys.executable, "-m", "agentsd.cli", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "run" in r.stdout


def test_run_help_lists_options():
    r = runner.invoke(app, ["run", "--help"])
    assert r.exit_code == 0
    for opt in ("--env", "--config", "--name", "--resume", "--debug"):
        assert opt in r.output


def test_bad_key_is_one_line_error():
    r = runner.invoke(app, ["run", "--env", "sokoban", "rollout.bach=16"])
    assert r.exit_code == 2
    assert "rollout.bach" in r.output and "batch" in r.output
    assert "Traceback" not in r.output


def test_unknown_env_is_one_line_error():
    r = runner.invoke(app, ["run", "--env", "sokobn"])
    assert r.exit_code == 2
    assert "unknown env 'sokobn'" in r.output and "sokoban" in r.output


def test_resume_needs_name():
    r = runner.invoke(app, ["run", "--env", "sokoban", "--resume"])
    assert r.exit_code == 2 and "--name" in r.output


def test_bad_level_files_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.xsb"
    bad.write_text("#####\n#@$ #\n#####\n")
    for arg, expect in [
        (f"env.kwargs.level={tmp_path / 'missing.xsb'}", "cannot read level file"),
        (f"env.kwargs.level={bad}", "boxes but 0 goals"),
        ("env.kwargs.difficulty=extreme", "difficulty must be one of"),
    ]:
        r = runner.invoke(app, ["run", "--env", "sokoban", arg])
        assert r.exit_code == 2, r.output
        assert expect in r.output and "Traceback" not in r.output


def test_play_accepts_bare_words_and_survives_garbage():
    r = runner.invoke(app, ["play", "--env", "sokoban", "--seed", "3"], input="up\nfoo\nq\n")
    assert r.exit_code == 0
    assert "invalid_format" in r.output and "reward -0.10" in r.output


def test_eval_command_on_tiny_model(tmp_path, tiny_model_dir):
    out = tmp_path / "eval.jsonl"
    r = runner.invoke(app, [
        "eval", "--env", "sokoban", "--model", tiny_model_dir, "--episodes", "2", "--out", str(out),
        "eval.sampling.max_new_tokens=4", "rollout.max_turns=2", "env.kwargs.brief=true",
    ])
    assert r.exit_code == 0, r.output
    assert "sokoban test: success" in r.output
    assert len(out.read_text().splitlines()) == 2


def test_resume_uses_the_runs_saved_config(tmp_path, tiny_model_dir):
    import json

    first = runner.invoke(app, [
        "run", "--env", "sokoban", "--name", "r", f"output_dir={tmp_path}", f"model.name={tiny_model_dir}",
        "learning.warmstart.episodes=1", "learning.iterations=0", "eval.episodes=1", "rollout.max_turns=2",
        "eval.sampling.max_new_tokens=3",
    ])
    assert first.exit_code == 0, first.output
    # only the location is repeated: model, budgets etc. come from runs/r/config.yaml
    again = runner.invoke(app, ["run", "--name", "r", "--resume", f"output_dir={tmp_path}"])
    assert again.exit_code == 0, again.output
    phases = [json.loads(x)["phase"] for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert phases == ["warmstart", "eval_before", "eval_after"]
    missing = runner.invoke(app, ["run", "--name", "nope", "--resume", f"output_dir={tmp_path}"])
    assert missing.exit_code == 2 and "no run to resume" in missing.output
