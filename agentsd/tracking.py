"""Experiment tracking: a run's phase records as scalars in TensorBoard (default), and in W&B or MLflow
when enabled (optional extras, imported only then).

    tracker = Tracker.from_config(cfg)                 # cfg.tracking: {tensorboard, wandb, mlflow, project, ...}
    tracker.log_phase(record, step)                    # the dict evolve.py appends to metrics.jsonl
    tracker.close()

A record ``{"phase": "iter_1", "kind": "train", "metrics": {...}, "rollout": {...}, "learn": {...},
"memory": {...}, "sft": {...}, "time": ...}`` becomes scalars tagged ``<kind>/<section>/<key>``, e.g.
``eval/metrics/success``, ``train/learn/loss``, ``train/rollout/tokens_per_s``, ``train/memory/size/skill``
(lists of two numbers, like ``success_ci``, become ``..._lo`` / ``..._hi``; None, strings and the record's
``time`` are left out). TensorBoard event files go to ``<run dir>/tb`` (``tensorboard --logdir runs``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class TrackingError(RuntimeError):
    """A tracking backend is enabled but cannot be used (e.g. not installed), in one line."""


def flatten_record(record: Mapping[str, Any]) -> dict[str, float]:
    """A phase record -> ``{tag: float}`` (see the module docstring)."""
    kind = str(record.get("kind", "phase"))
    out: dict[str, float] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, bool):
            out[prefix] = float(value)
        elif isinstance(value, int | float):
            if not (isinstance(value, float) and math.isnan(value)):
                out[prefix] = float(value)
        elif isinstance(value, Mapping):
            for k, v in value.items():
                walk(f"{prefix}/{k}", v)
        elif isinstance(value, list | tuple) and len(value) == 2 and all(
                isinstance(x, int | float) and not isinstance(x, bool) for x in value):
            out[prefix + "_lo"], out[prefix + "_hi"] = float(value[0]), float(value[1])

    for section, value in record.items():
        if section in ("phase", "kind", "time"):
            continue
        walk(f"{kind}/{section}", value)
    return out


def _flat_config(cfg: Any) -> dict[str, Any]:
    if cfg is None:
        return {}
    data = cfg.model_dump(mode="json") if hasattr(cfg, "model_dump") else dict(cfg)
    out: dict[str, Any] = {}

    def walk(prefix: str, v: Any) -> None:
        if isinstance(v, Mapping):
            for k, x in v.items():
                walk(f"{prefix}.{k}" if prefix else str(k), x)
        else:
            out[prefix] = v

    walk("", data)
    return out


class Tracker:
    """Logs phase records to TensorBoard (``<run_dir>/tb``) and, when enabled, W&B and/or MLflow."""

    def __init__(self, run_dir: str | Path | None, *, tensorboard: bool = True, wandb: bool = False,
                 mlflow: bool = False, project: str = "agentsd", run_name: str | None = None,
                 entity: str | None = None, mlflow_tracking_uri: str | None = None, config: Any = None):
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.run_name = run_name or (self.run_dir.name if self.run_dir else None)
        self.project = project
        self._step = 0
        self._tb = self._wandb = self._mlflow = None
        if tensorboard:
            if self.run_dir is None:
                raise TrackingError("tracking.tensorboard needs a run directory (event files go to <run dir>/tb)")
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:  # pragma: no cover - tensorboard is a core dependency
                raise TrackingError(f"tracking.tensorboard is enabled but tensorboard cannot be imported ({e}); "
                                    "pip install tensorboard, or set tracking.tensorboard=false") from None
            self.tb_dir = self.run_dir / "tb"
            self._tb = SummaryWriter(log_dir=str(self.tb_dir))
        if wandb:
            try:
                import wandb as wandb_mod
            except ImportError:
                raise TrackingError("tracking.wandb is enabled but wandb is not installed: pip install wandb "
                                    "(or set tracking.wandb=false)") from None
            self._wandb = wandb_mod.init(project=project, entity=entity, name=self.run_name,
                                         dir=str(self.run_dir) if self.run_dir else None,
                                         config=_flat_config(config), reinit=True)
        if mlflow:
            try:
                import mlflow as mlflow_mod
            except ImportError:
                raise TrackingError("tracking.mlflow is enabled but mlflow is not installed: pip install mlflow "
                                    "(or set tracking.mlflow=false)") from None
            if mlflow_tracking_uri:
                mlflow_mod.set_tracking_uri(mlflow_tracking_uri)
            mlflow_mod.set_experiment(project)
            self._mlflow = mlflow_mod
            self._mlflow_run = mlflow_mod.start_run(run_name=self.run_name)
            params = {k: str(v)[:250] for k, v in _flat_config(config).items()}
            if params:
                mlflow_mod.log_params(params)

    @classmethod
    def from_config(cls, cfg: Any, run_dir: str | Path | None = None) -> Tracker:
        """From a RunConfig (or a dict of one) with an optional ``tracking`` section:
        ``{tensorboard: true, wandb: false, mlflow: false, project: agentsd, entity: null,
        mlflow_tracking_uri: null}``. Without the section: TensorBoard only."""
        tracking = getattr(cfg, "tracking", None) if not isinstance(cfg, Mapping) else cfg.get("tracking")
        t = tracking.model_dump() if hasattr(tracking, "model_dump") else dict(tracking or {})
        if run_dir is None:
            run_dir = getattr(cfg, "run_dir", None)
            if run_dir is None and isinstance(cfg, Mapping):
                run_dir = Path(cfg.get("output_dir", "runs")) / cfg.get("name", "run")
        unknown = set(t) - {"tensorboard", "wandb", "mlflow", "project", "entity", "mlflow_tracking_uri", "run_name"}
        if unknown:
            raise TrackingError(f"unknown tracking setting(s): {', '.join(sorted(unknown))}")
        return cls(run_dir, tensorboard=t.get("tensorboard", True), wandb=t.get("wandb", False),
                   mlflow=t.get("mlflow", False), project=t.get("project") or "agentsd", entity=t.get("entity"),
                   mlflow_tracking_uri=t.get("mlflow_tracking_uri"), run_name=t.get("run_name"),
                   config=cfg)

    def log_phase(self, record: Mapping[str, Any], step: int | None = None) -> dict[str, float]:
        """Log one phase record's scalars at ``step`` (default: one more than the last step); returns them."""
        step = self._step + 1 if step is None else int(step)
        self._step = step
        scalars = flatten_record(record)
        if self._tb is not None:
            for tag, v in scalars.items():
                self._tb.add_scalar(tag, v, global_step=step)
            self._tb.add_text("phases", f"{record.get('phase')} ({record.get('kind')})", global_step=step)
            self._tb.flush()
        if self._wandb is not None:
            self._wandb.log({**scalars, "phase_index": step}, step=step)
        if self._mlflow is not None:
            self._mlflow.log_metrics(scalars, step=step)
        return scalars

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None
        if self._mlflow is not None:
            self._mlflow.end_run()
            self._mlflow = None

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
