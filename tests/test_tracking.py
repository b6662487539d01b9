"""agentsd.tracking: phase records -> TensorBoard event files (read back), optional W&B / MLflow."""

import sys
import types

import pytest

from agentsd.tracking import Tracker, TrackingError, flatten_record

RECORD_EVAL = {"phase": "eval_before", "kind": "eval", "time": 1.0,
               "metrics": {"episodes": 8, "success": 0.25, "success_ci": [0.07, 0.59], "return": -1.5,
                           "return_ci": 0.3, "invalid_rate": 0.0, "turns": 12.0, "turns_to_success": None,
                           "tokens": 960},
               "rollout": {"episodes": 8, "tokens": 960, "tokens_per_s": 41.5}}
RECORD_TRAIN = {"phase": "iter_1", "kind": "train", "time": 2.0,
                "metrics": {"episodes": 8, "success": 0.5, "success_ci": [0.2, 0.8]},
                "rollout": {"episodes": 8, "tokens": 1000},
                "learn": {"loss": 0.125, "stepped": 1.0, "steps": 1},
                "memory": {"added": 3, "merged": 1, "size": {"skill": 4, "guardrail": 2}}}


def test_flatten_record():
    s = flatten_record(RECORD_TRAIN)
    assert s["train/metrics/success"] == 0.5
    assert (s["train/metrics/success_ci_lo"], s["train/metrics/success_ci_hi"]) == (0.2, 0.8)
    assert s["train/learn/loss"] == 0.125 and s["train/memory/size/guardrail"] == 2.0
    assert not any(k.endswith(("phase", "kind", "time")) for k in s)
    assert "eval/metrics/turns_to_success" not in flatten_record(RECORD_EVAL)  # None is left out


def _scalars(tb_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir))
    acc.Reload()
    return acc, {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_event_files_read_back(tmp_path):
    tr = Tracker.from_config({"name": "r", "output_dir": str(tmp_path)})
    tr.log_phase(RECORD_EVAL, step=0)
    tr.log_phase(RECORD_TRAIN, step=8)
    tr.log_phase({**RECORD_EVAL, "phase": "eval_after", "metrics": {**RECORD_EVAL["metrics"], "success": 0.5}},
                 step=8)
    tr.close()
    assert any((tmp_path / "r" / "tb").glob("events.out.tfevents.*"))
    _, sc = _scalars(tmp_path / "r" / "tb")
    assert sc["eval/metrics/success"] == [(0, 0.25), (8, 0.5)]
    assert sc["train/learn/loss"] == [(8, 0.125)]
    assert sc["train/memory/size/skill"] == [(8, 4.0)]
    assert sc["eval/rollout/tokens_per_s"][0] == (0, pytest.approx(41.5))


def test_from_run_config_and_default_steps(tmp_path):
    from agentsd.config import load_config

    cfg = load_config("sokoban", [f"output_dir={tmp_path}", "name=cfgrun"])
    with Tracker.from_config(cfg) as tr:
        tr.log_phase(RECORD_EVAL)
        tr.log_phase(RECORD_EVAL)
    _, sc = _scalars(tmp_path / "cfgrun" / "tb")
    assert [s for s, _ in sc["eval/metrics/success"]] == [1, 2]


def test_tensorboard_can_be_off_and_unknown_settings_fail(tmp_path):
    tr = Tracker.from_config({"name": "r", "output_dir": str(tmp_path), "tracking": {"tensorboard": False}})
    assert tr.log_phase(RECORD_EVAL)["eval/metrics/success"] == 0.25
    tr.close()
    assert not (tmp_path / "r" / "tb").exists()
    with pytest.raises(TrackingError, match="unknown tracking setting"):
        Tracker.from_config({"tracking": {"tensorbord": True}})


@pytest.mark.parametrize("backend", ["wandb", "mlflow"])
def test_optional_backend_missing_is_a_clear_error(tmp_path, monkeypatch, backend):
    monkeypatch.setitem(sys.modules, backend, None)  # import fails as if not installed
    with pytest.raises(TrackingError, match=f"tracking.{backend} is enabled but {backend} is not installed"):
        Tracker(tmp_path, tensorboard=False, **{backend: True})


def test_wandb_and_mlflow_receive_the_scalars(tmp_path, monkeypatch):
    calls: list[tuple] = []

    class Run:
        def log(self, data, step):
            calls.append(("wandb.log", step, data))

        def finish(self):
            calls.append(("wandb.finish",))

    wandb = types.ModuleType("wandb")
    wandb.init = lambda **kw: calls.append(("wandb.init", kw["project"], kw["name"])) or Run()
    mlflow = types.ModuleType("mlflow")
    mlflow.set_tracking_uri = lambda uri: calls.append(("mlflow.uri", uri))
    mlflow.set_experiment = lambda name: calls.append(("mlflow.experiment", name))
    mlflow.start_run = lambda run_name: calls.append(("mlflow.start", run_name))
    mlflow.log_params = lambda p: calls.append(("mlflow.params", p))
    mlflow.log_metrics = lambda m, step: calls.append(("mlflow.metrics", step, m))
    mlflow.end_run = lambda: calls.append(("mlflow.end",))
    monkeypatch.setitem(sys.modules, "wandb", wandb)
    monkeypatch.setitem(sys.modules, "mlflow", mlflow)
    cfg = {"name": "r", "output_dir": str(tmp_path), "seed": 3,
           "tracking": {"tensorboard": False, "wandb": True, "mlflow": True, "project": "proj",
                        "mlflow_tracking_uri": "file:///tmp/ml"}}
    tr = Tracker.from_config(cfg)
    tr.log_phase(RECORD_TRAIN, step=4)
    tr.close()
    names = [c[0] for c in calls]
    assert names == ["wandb.init", "mlflow.uri", "mlflow.experiment", "mlflow.start", "mlflow.params", "wandb.log",
                     "mlflow.metrics", "wandb.finish", "mlflow.end"]
    assert calls[0][1:] == ("proj", "r") and calls[4][1]["seed"] == "3"
    assert calls[5][1] == 4 and calls[5][2]["train/learn/loss"] == 0.125
    assert calls[6][2]["train/memory/added"] == 3.0
