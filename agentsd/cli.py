"""The ``agentsd`` command line.

    agentsd run --env sokoban rollout.batch=16
    agentsd eval --env sokoban --model runs/sokoban/checkpoints/iter_2
    agentsd play --env sokoban
    agentsd diagnose --env sokoban --states 64
    agentsd envs
    agentsd serve smollm2-135m --port 8000

Heavy libraries (torch, transformers) are imported inside commands, so ``agentsd --help`` is fast.
Errors print one line and exit non-zero; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console

from agentsd.cli_memory import memory_app
from agentsd.cli_sweep import register as register_sweep_commands

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="agentsd: self-evolving LLM agents (skills, guardrails, self-distillation).",
    context_settings={"help_option_names": ["-h", "--help"]},
)
console = Console()
err = Console(stderr=True)

DebugOpt = Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")]


@contextmanager
def friendly_errors(debug: bool):
    """One clear line instead of a traceback (unless --debug); Ctrl-C exits 130."""
    try:
        yield
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]: finished episodes are saved; rerun with --resume to continue")
        raise typer.Exit(130) from None
    except Exception as e:  # noqa: BLE001 - the CLI boundary turns every error into one line
        if debug:
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        err.print(f"[red]error[/]: {msg}", highlight=False)
        raise typer.Exit(2) from None


def _quiet_transformers() -> None:
    """Our own progress bars are enough: hide transformers' per-load weight bars."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def _load_cfg(env: str | None, config: str | None, overrides: list[str]):
    from agentsd.config import apply_overrides, build_config, read_yaml, shipped_configs

    shipped = shipped_configs()
    data: dict = {}
    if config:
        data = read_yaml(shipped.get(config, config))
    elif env and env in shipped:
        data = read_yaml(shipped[env])
    if env:
        data.setdefault("env", {})["name"] = env
    apply_overrides(data, overrides)
    cfg = build_config(data)
    from agentsd.envs import make

    # Build the env once now: an unknown env, a bad kwarg or an unreadable / malformed level file fails
    # here in one line, before any model is loaded.
    make(cfg.env.name, **cfg.env.kwargs).close()
    return cfg


@app.command()
def run(
    overrides: Annotated[
        list[str] | None, typer.Argument(help="Dotted config overrides, e.g. rollout.batch=16 eval.episodes=8")
    ] = None,
    env: Annotated[str | None, typer.Option("--env", "-e", help="Environment name (see `agentsd envs`).")] = None,
    config: Annotated[
        str | None, typer.Option("--config", "-c", help="Shipped config name or YAML path.")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Run name: output goes to <output_dir>/<name>.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run of this name.")] = False,
    mode: Annotated[
        str | None,
        typer.Option("--mode", "-m", help="distill (learn weights), memory (planner loop, no weight update) or "
                     "both (trained student inside the planner); default: the config's mode."),
    ] = None,
    debug: DebugOpt = False,
) -> None:
    """Warm-start -> evaluate on test seeds -> iterations on train seeds -> evaluate again."""
    with friendly_errors(debug):
        if resume and not name:
            raise ValueError("--resume needs --name of the run to continue")
        ov = list(overrides or [])
        if mode is not None:
            ov = [f"mode={mode}", *ov]
            if mode in ("memory", "both") and not any(o.startswith("memory.enabled=") for o in ov):
                ov.insert(1, "memory.enabled=true")  # the planner works over the run's memory
        cfg = _load_cfg(env, config, ov)
        if resume:
            # Continue with the run's own saved config (plus any overrides given now).
            saved = cfg.run_dir.parent / name / "config.yaml"
            if not saved.exists():
                raise FileNotFoundError(f"no run to resume at {str(saved.parent)!r}")
            cfg = _load_cfg(None, str(saved), ov)
        # Without --name every run gets a fresh directory, so `make run` can be repeated safely.
        cfg.name = name or f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        if int(os.environ.get("RANK", "0") or 0) > 0:
            console.quiet = True  # a data-parallel launch: only the main process prints
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from agentsd.evolve import run as run_recipe

        _quiet_transformers()

        console.print(f"[bold]agentsd run[/] {cfg.name}: env={cfg.env.name} {cfg.env.kwargs} model={cfg.model.name}")
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console, transient=True,
        ) as bars:
            ids: dict[str, int] = {}

            def progress(phase: str, done: int, total: int) -> None:
                if phase not in ids:
                    ids[phase] = bars.add_task(phase, total=total)
                bars.update(ids[phase], completed=done, total=total)

            result = run_recipe(cfg, resume=resume, progress=progress, log=console.print)
        console.print(result.table())
        console.print(f"outputs in [bold]{result.run_dir}[/] (config.yaml, trajectories/, metrics.jsonl, summary.json)")
        if (result.run_dir / "memory" / "memory.sqlite").exists():
            console.print(f"skill memory: agentsd memory stats --path {result.run_dir / 'memory'}", highlight=False)


@app.command("eval")
def eval_(
    env: Annotated[str, typer.Option("--env", "-e")] = "sokoban",
    model: Annotated[str, typer.Option("--model", "-m", help="Model name, local dir or openai:URL.")] = "smollm2-135m",
    episodes: Annotated[int, typer.Option("--episodes", "-n")] = 32,
    split: Annotated[str, typer.Option("--split")] = "test",
    overrides: Annotated[list[str] | None, typer.Argument(help="Dotted overrides (env.kwargs..., eval...)")] = None,
    out: Annotated[str | None, typer.Option("--out", help="Write trajectories JSONL here.")] = None,
    debug: DebugOpt = False,
) -> None:
    """Evaluate a model on a split's seeds and print the metrics."""
    with friendly_errors(debug):
        cfg = _load_cfg(env, None, list(overrides or []) + [f"model.name={model}"])
        from agentsd.metrics import summarize
        from agentsd.policy import load_policy
        from agentsd.rollout import EnvFactory, PolicyActor, make_tasks, rollout

        envs = EnvFactory(cfg.env.name, cfg.env.kwargs)
        from agentsd.evolve import model_kwargs

        policy = load_policy(cfg.model.name, **model_kwargs(cfg.model))
        tasks = make_tasks(envs.cls, split, episodes)
        trajs, stats = rollout(envs, PolicyActor(policy, cfg.eval.sampling), tasks, batch=cfg.rollout.batch,
                               max_turns=cfg.rollout.max_turns, history=cfg.rollout.history, out_path=out)
        m = summarize(trajs)
        lo, hi = m["success_ci"]
        console.print(
            f"{cfg.env.name} {split}: success {m['success']:.1%} [{lo:.1%}, {hi:.1%}]  "
            f"return {m['return']:.2f} ± {m['return_ci']:.2f}  invalid {m['invalid_rate']:.1%}  "
            f"tok/s {stats.tokens_per_s:.0f}"
        )


@app.command()
def diagnose(
    env: Annotated[str, typer.Option("--env", "-e")] = "sokoban",
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model name or dir (default: the run's "
                                                                     "last checkpoint, else the config's model).")] = None,
    run: Annotated[str | None, typer.Option("--run", help="A run dir: its config, memory/ and last checkpoint.")] = None,
    states: Annotated[int, typer.Option("--states", "-n", help="Held-out oracle states to score.")] = 64,
    contexts: Annotated[str, typer.Option("--contexts", help="Comma list of student, skills, guardrails, "
                                                             "reference (skills needs --run).")] = "guardrails,reference",
    overrides: Annotated[list[str] | None, typer.Argument(help="Dotted overrides, e.g. env.kwargs.grid_format=cells")] = None,
    out: Annotated[str | None, typer.Option("--out", help="Write the report JSON here.")] = None,
    debug: DebugOpt = False,
) -> None:
    """The learnability meter: P(oracle action) and top-1 agreement on held-out states, per context."""
    with friendly_errors(debug):
        import json
        from pathlib import Path

        from agentsd.learnability import CONTEXTS, format_report, measure, oracle_states

        names = [c.strip() for c in contexts.split(",") if c.strip()]
        bad = [c for c in names if c not in CONTEXTS]
        if bad:
            raise ValueError(f"unknown context {bad[0]!r}; known: {', '.join(CONTEXTS)}")
        run_dir = Path(run) if run else None
        if run_dir is not None and not (run_dir / "config.yaml").exists():
            raise FileNotFoundError(f"no run at {run!r} (config.yaml missing)")
        cfg = _load_cfg(None if run_dir else env, str(run_dir / "config.yaml") if run_dir else None,
                        list(overrides or []))
        if model is None and run_dir is not None and (run_dir / "state.json").exists():
            model = json.loads((run_dir / "state.json").read_text()).get("checkpoint") or None
        _quiet_transformers()
        from agentsd.evolve import model_kwargs
        from agentsd.policy import load_policy
        from agentsd.rollout import EnvFactory

        policy = load_policy(model or cfg.model.name, **model_kwargs(cfg.model))
        mem = skills = guards = None
        if run_dir is not None and (run_dir / "memory").exists():
            from agentsd.memory import SkillMemory

            mc, sk = cfg.memory, cfg.learning.skills
            mem = SkillMemory(run_dir / "memory", namespace=mc.namespace, embedder=mc.embedding_model,
                              embedding_backend=mc.embedding_backend)
            guards = [g for g in mem.entries(kind="guardrail", env=cfg.env.name) if g.executable] or None

            def skills(query: str) -> str | None:
                return mem.render(mem.retrieve(query, k=sk.k, env=cfg.env.name, budget_tokens=sk.budget_tokens)) or None
        elif "skills" in names:
            raise ValueError("the skills context needs --run with a memory/ dir")
        envs = EnvFactory(cfg.env.name, cfg.env.kwargs)
        picked = oracle_states(envs, states, history=cfg.rollout.history, guardrails=guards)
        report = measure(policy, picked, names, skills=skills)
        if mem is not None:
            mem.close()
        report.update(env=cfg.env.model_dump(mode="json"), model=model or cfg.model.name,
                      guardrails="memory" if guards else "env predicates")
        console.print(format_report(report), highlight=False)
        if out:
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            Path(out).write_text(json.dumps(report, indent=1))
            console.print(f"wrote {out}")


@app.command()
def envs() -> None:
    """List registered environments."""
    from rich.table import Table

    from agentsd.envs import list_envs

    t = Table(title="agentsd environments")
    for col in ("name", "gymnasium id", "train seeds", "test seeds", "description"):
        t.add_column(col)
    for s in list_envs():
        cls = s.load()
        t.add_row(s.name, s.gym_id, _fmt_range(cls.train_seeds), _fmt_range(cls.test_seeds), s.description)
    console.print(t)


def _fmt_range(r: range) -> str:
    return f"{r.start}..{r.stop - 1}"


@app.command()
def play(
    env: Annotated[str, typer.Option("--env", "-e")] = "sokoban",
    seed: Annotated[int, typer.Option("--seed")] = 0,
    overrides: Annotated[list[str] | None, typer.Argument(help="env kwargs as key=value, e.g. difficulty=hard")] = None,
    debug: DebugOpt = False,
) -> None:
    """Play an environment yourself in the terminal (type an action, or 'q' to quit)."""
    with friendly_errors(debug):
        from agentsd.config import apply_overrides
        from agentsd.envs import make

        kwargs = apply_overrides({}, list(overrides or []))
        e = make(env, **kwargs)
        obs, info = e.reset(seed=seed)
        console.print(e.instructions(), highlight=False)
        console.print(f"\n[bold]{e.task_description()}[/]", highlight=False)
        total = 0.0
        while True:
            console.print("\n" + obs, highlight=False)
            try:
                line = input("action> ").strip()
            except EOFError:
                break
            if line.lower() in {"q", "quit", "exit"}:
                break
            text = line if "<" in line else f"<answer>{line}</answer>"
            obs, reward, terminated, truncated, info = e.step(text)
            total += reward
            d = info["diagnosis"]
            note = f" ({d['failure_type']}: {d['detail']})" if d.get("failure_type") else ""
            console.print(f"reward {reward:+.2f}  total {total:+.2f}  progress {d['progress']:.2f}{note}", highlight=False)
            if terminated or truncated:
                console.print("\n" + obs, highlight=False)
                console.print("[green]solved![/]" if info["success"] else "[yellow]episode over[/]")
                break


@app.command()
def serve(
    model: Annotated[str, typer.Argument(help="Model name or local HF dir (e.g. a run checkpoint).")] = "smollm2-135m",
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8000,
    dtype: Annotated[str, typer.Option("--dtype", help="auto, float32 or bfloat16")] = "auto",
    debug: DebugOpt = False,
) -> None:
    """Serve a model over the OpenAI chat-completions API."""
    with friendly_errors(debug):
        from agentsd.policy import load_policy
        from agentsd.serve import serve as serve_policy

        policy = load_policy(model, dtype=dtype)
        serve_policy(policy, host=host, port=port, model_name=model)


app.add_typer(memory_app, name="memory")
register_sweep_commands(app)  # agentsd sweep, agentsd report (agentsd/cli_sweep.py)


def main() -> None:
    app(prog_name="agentsd")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
