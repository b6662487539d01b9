"""``agentsd sweep`` and ``agentsd report``: thin wrappers over :mod:`agentsd.sweep` and :mod:`agentsd.report`.

    agentsd sweep configs/sweeps/small.yaml                         # every arm x env x seed, resumable
    agentsd sweep configs/sweeps/small.yaml --arms base,grpo --seeds 0 --set eval.episodes=4 --name smoke
    agentsd sweep configs/sweeps/small.yaml --dry-run               # validate and list the runs only
    agentsd report runs/small                                       # report.md + report.html (also one run dir)

Registered on the main app by :func:`register`; heavy imports (matplotlib, torch) happen inside commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console()

DebugOpt = Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")]


def _csv(text: str | None) -> list[str] | None:
    return [x.strip() for x in text.split(",") if x.strip()] if text else None


def sweep(
    file: Annotated[Path, typer.Argument(metavar="SWEEP.yaml", help="A sweep file, e.g. configs/sweeps/small.yaml.")],
    name: Annotated[str | None, typer.Option("--name", help="Sweep directory name (default: the file's name:).")] = None,
    arms: Annotated[str | None, typer.Option("--arms", help="Only these arms, comma-separated.")] = None,
    envs: Annotated[str | None, typer.Option("--envs", help="Only these envs, comma-separated.")] = None,
    seeds: Annotated[str | None, typer.Option("--seeds", help="Only these seeds, comma-separated.")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Extra override for every run (before the arms' own), e.g. --set eval.episodes=4; "
                     "repeatable."),
    ] = None,
    output_dir: Annotated[str | None, typer.Option("--output-dir", help="Parent of the sweep directory.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate every run's config and list the runs.")] = False,
    fail_fast: Annotated[bool, typer.Option("--fail-fast", help="Stop at the first failed run.")] = False,
    threads: Annotated[
        int | None, typer.Option("--threads", min=1, help="CPU threads per run (OMP_NUM_THREADS); 1 helps on a busy CPU.")
    ] = None,
    jobs: Annotated[
        int, typer.Option("--jobs", "-j", min=0, help="Runs at once, each its own subprocess (e.g. -j 2 --threads 1 on "
                          "2 cores); with --ray 0 = as many as Ray schedules.")
    ] = 1,
    ray_address: Annotated[
        str | None, typer.Option("--ray", help="Run each run as a Ray task: 'local', 'auto' or ray://host:10001 "
                                 "(nodes need the sweep directory on a shared filesystem).")
    ] = None,
    debug: DebugOpt = False,
) -> None:
    """Run a sweep (arms x envs x seeds, one subprocess per run); complete runs are skipped, interrupted ones resumed.

    Writes runs/<sweep>/results.jsonl and results.md."""
    from agentsd.cli import friendly_errors

    with friendly_errors(debug):
        from agentsd.sweep import expand, load_sweep, run_sweep

        spec, base = load_sweep(file)
        seed_list = [int(s) for s in _csv(seeds)] if seeds else None
        plan = expand(spec, base, name=name, extra=list(set_ or []), arms=_csv(arms), envs=_csv(envs),
                      seeds=seed_list, output_dir=output_dir)
        console.print(f"[bold]agentsd sweep[/] {plan.sweep_dir.name}: {len(plan.runs)} runs validated "
                      f"-> {plan.sweep_dir}", highlight=False)
        if dry_run:
            for r in plan.runs:
                console.print(f"  {r.run}: {' '.join(r.overrides)}", highlight=False, soft_wrap=True)
            return
        if jobs == 0 and not ray_address:
            raise typer.BadParameter("--jobs 0 (as many as Ray schedules) needs --ray", param_hint="--jobs")
        records = run_sweep(plan, log=lambda s: console.print(s, highlight=False), threads=threads, jobs=jobs,
                            ray_address=ray_address)
        md = (plan.sweep_dir / "results.md").read_text()
        console.print(md.split("## Runs")[0], markup=False, highlight=False, soft_wrap=True)
        console.print(f"results: {plan.sweep_dir / 'results.md'} and results.jsonl; "
                      f"report: agentsd report {plan.sweep_dir}", highlight=False)
        failed = [r["run"] for r in records if r["status"].startswith("failed")]
        if failed:
            console.print(f"[red]{len(failed)} run(s) failed[/]: {', '.join(failed)} (rerun the same command to retry)",
                          highlight=False)
            raise typer.Exit(1)


def report(
    path: Annotated[Path, typer.Argument(help="A sweep directory (runs/<sweep>) or a single run directory.")],
    out: Annotated[Path | None, typer.Option("--out", help="Output directory (default: PATH).")] = None,
    episodes: Annotated[int, typer.Option("--episodes", min=0, help="Episodes per run embedded in the viewer.")] = 4,
    baseline: Annotated[str | None, typer.Option("--baseline", help="Arm the paired differences compare to.")] = None,
    debug: DebugOpt = False,
) -> None:
    """Write report.md and a self-contained report.html (plots, tables, trajectory viewer)."""
    from agentsd.cli import friendly_errors

    with friendly_errors(debug):
        from agentsd.report.build import build_report

        res = build_report(path, out_dir=out, episodes_per_run=episodes, baseline=baseline)
        console.print(f"report: {res.markdown}\n        {res.html} ({res.html.stat().st_size / 1e3:.0f} kB, "
                      f"{len(res.plots)} plots in {res.plots[0].parent if res.plots else '-'})", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``sweep`` and ``report`` to the main ``agentsd`` app."""
    app.command("sweep")(sweep)
    app.command("report")(report)
