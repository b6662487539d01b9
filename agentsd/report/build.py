"""``agentsd report``: a sweep directory (or one run directory) -> report.md + report.html + PNG plots.

    res = build_report("runs/small")
    res.markdown, res.html, res.plots       # runs/small/report.md, report.html, report_files/*.png

report.md links the PNGs in ``report_files/``; report.html embeds them (base64) together with the tables
and the trajectory viewer, so it is one self-contained file that needs no network.
"""

from __future__ import annotations

import html as _html
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentsd.report.collect import find_runs, read_run
from agentsd.report.tables import NOTES, aggregate, paired_table, runs_table, summary_table

FILES_DIR = "report_files"


@dataclass
class ReportResult:
    markdown: Path
    html: Path
    plots: list[Path] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    aggregate: dict[str, Any] = field(default_factory=dict)


def _skills_table(rows: list[dict[str, Any]]) -> str:
    header = ["run", "kind", "name", "summary", "usage", "votes", "vote events", "support", "confidence", "status"]
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        summary = r["summary"].replace("|", "/").replace("\n", " ")
        summary = summary if len(summary) <= 110 else summary[:107] + "..."
        out.append("| " + " | ".join([r["run"], r["kind"], r["name"], summary, str(r["usage"]),
                                       f"+{r['upvotes']}/-{r['downvotes']}", str(r["votes_logged"]), str(r["support"]),
                                       f"{r['confidence']:.2f}", r["status"]]) + " |")
    return "\n".join(out)


def build_report(path: str | Path, *, out_dir: str | Path | None = None, episodes_per_run: int = 4,
                 baseline: str | None = None, top_skills: int = 12, seed: int = 0) -> ReportResult:
    from agentsd.report import html as H
    from agentsd.report import plots
    from agentsd.report.skills import memory_entries
    from agentsd.report.viewer import run_episodes

    path = Path(path)
    dirs, manifest = find_runs(path)
    out = Path(out_dir) if out_dir else path
    files = out / FILES_DIR
    files.mkdir(parents=True, exist_ok=True)
    records = [read_run(d, manifest) for d in dirs]
    spec = (manifest or {}).get("spec", {})
    agg = aggregate(records, baseline=baseline or spec.get("baseline"),
                    compare=[tuple(p) for p in spec.get("compare", [])], seed=seed)
    title = f"agentsd report: {path.name}"
    single = manifest is None and len(dirs) == 1 and dirs[0] == path

    figs = [
        ("learning_curves.png", "Test success vs cumulative train rollout episodes (eval phases; band: 95% CI over seeds)",
         lambda p: plots.learning_curves(records, agg["arms"], agg["envs"], p)),
        ("success_by_env.png", "Final test success per arm and environment (mean over seeds, 95% bootstrap CI)",
         lambda p: plots.success_bars(agg, p)),
        ("cost_benefit.png", "Cost vs benefit: final test success against generated tokens and wall time per run",
         lambda p: plots.cost_benefit(agg, p)),
    ]
    plot_paths = [fn(files / name) for name, _, fn in figs]
    skills, skill_notes = memory_entries(records, top=top_skills)
    done = sum(1 for r in records if r["complete"])
    subtitle = (f"{len(records)} run(s), {done} complete; arms: {', '.join(agg['arms'])}; envs: {', '.join(agg['envs'])}; "
                f"written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")

    sections: list[tuple[str, str]] = [
        ("Summary (mean [95% CI] over seeds)", summary_table(agg)),
        (f"Paired differences on the same test tasks (baseline: {agg['baseline']})", paired_table(agg)),
    ]
    skills_md = _skills_table(skills) if skills else "(no run of this report has a skill memory)"
    skills_md += "".join(f"\n\n{n}" for n in skill_notes)
    tail = [("Top skills and guardrails (usage, votes from record_outcome)", skills_md), ("Runs", runs_table(records))]

    md = [f"# {title}", subtitle]
    for head, body in sections:
        md += [f"## {head}", body]
    md.append("## Plots")
    for (_name, caption, _), p in zip(figs, plot_paths, strict=True):
        md.append(f"![{caption}]({FILES_DIR}/{p.name})\n\n*{caption}*")
    for head, body in tail:
        md += [f"## {head}", body]
    md += [NOTES, "The trajectory viewer is in report.html (open it in a browser; it needs no network)."]
    md_path = out / "report.md"
    md_path.write_text("\n\n".join(md) + "\n", encoding="utf-8")

    body = []
    for head, text in sections:
        body.append(f"<h2>{_html.escape(head)}</h2>{H.md_table_to_html(text)}")
    body.append("<h2>Plots</h2>" + "".join(H.img(p, cap) for (_, cap, _), p in zip(figs, plot_paths, strict=True)))
    for head, text in tail:
        parts = text.split("\n\n")
        body.append(f"<h2>{_html.escape(head)}</h2>" + "".join(H.md_table_to_html(x) for x in parts))
    body.append(f'<p class="note">{_html.escape(NOTES)}</p>')
    viewer = {"runs": [{"run": r["run"], "arm": r["arm"], "env": r["env"], "seed": r["seed"],
                        "episodes": run_episodes(Path(r["dir"]), episodes_per_run)} for r in records]}
    note = (f"The first {episodes_per_run} episodes of each run's final evaluation and up to {max(1, episodes_per_run // 2)} "
            "of its last training phase. Use the buttons or the arrow keys to step.")
    if single:
        note += " (single run)"
    html_path = out / "report.html"
    html_path.write_text(H.page(title, subtitle, "\n".join(body), viewer, note), encoding="utf-8")
    return ReportResult(md_path, html_path, plot_paths, records, agg)
