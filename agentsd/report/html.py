"""The self-contained report.html: tables, PNG plots as base64 data URIs, and the trajectory viewer
(plain JavaScript, no network, no external files)."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from string import Template
from typing import Any


def md_table_to_html(md: str) -> str:
    """The pipe tables :mod:`agentsd.report.tables` writes -> an HTML table (other text -> a paragraph)."""
    lines = [x for x in md.strip().splitlines() if x.strip()]
    if not lines or not lines[0].startswith("|"):
        return f"<p>{html.escape(md)}</p>"

    def cells(line: str) -> list[str]:
        return [c.strip() for c in line.strip().strip("|").split("|")]

    head = "".join(f"<th>{html.escape(c)}</th>" for c in cells(lines[0]))
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells(x)) + "</tr>" for x in lines[2:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def img(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"><figcaption>{html.escape(alt)}</figcaption></figure>'


def _json_for_script(obj: Any) -> str:
    # inside <script type="application/json">: only "</" could end the element early
    return json.dumps(obj, ensure_ascii=False).replace("</", "<\\/")


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1250px;padding:0 18px 40px;color:#1d2330}
h1{font-size:1.5em}h2{margin-top:1.8em;border-bottom:1px solid #dde;padding-bottom:4px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}th,td{border:1px solid #d5d9e2;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f1f3f8}tbody tr:nth-child(even){background:#fafbfd}
figure{margin:10px 0}img{max-width:100%;border:1px solid #e3e6ee}figcaption{font-size:12px;color:#667}
.note{color:#556;font-size:13px}
#viewer{border:1px solid #ccd;border-radius:6px;padding:10px 14px;background:#fcfcfe}
#viewer .controls{display:flex;gap:8px;align-items:center;flex-wrap:wrap;margin-bottom:8px}
#viewer button{padding:3px 12px}#viewer select{max-width:460px}
.cols{display:grid;grid-template-columns:1fr 1fr;gap:12px}
.box{border:1px solid #e0e3ea;border-radius:4px;padding:6px 9px;background:#fff;overflow:auto}
.box h4{margin:0 0 4px 0;font-size:12px;color:#667;text-transform:uppercase;letter-spacing:.04em}
pre{margin:0;font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:13px;white-space:pre-wrap}
pre.grid{line-height:1.15;font-size:16px;letter-spacing:.12em}
.c-wall{color:#555;background:#ddd}.c-box{color:#a0522d;font-weight:bold}.c-target{color:#c00}.c-done{color:#080;font-weight:bold}
.c-player{color:#1a5fd0;font-weight:bold}
.ok{color:#080;font-weight:bold}.bad{color:#b00;font-weight:bold}
.kv td:first-child{font-weight:600;white-space:nowrap}
.hl{background:#fff7d6}
"""

JS = r"""
(function(){
  const data = JSON.parse(document.getElementById('viewer-data').textContent);
  const $ = id => document.getElementById(id);
  const runSel = $('run-select'), epSel = $('episode-select');
  let run = null, ep = null, step = 0;
  const GRID = {'#':'c-wall','X':'c-box','O':'c-target','√':'c-done','P':'c-player','S':'c-player'};
  const esc = s => String(s).replace(/[&<>"]/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));
  function isGridLine(l){ return /^[#_OX√PS]{3,}$/.test(l); }
  function renderObs(el, text, env){
    const lines = String(text || '').split('\n');
    const grid = env === 'sokoban' && lines.some(isGridLine);
    el.className = grid ? 'grid' : '';
    if (!grid) { el.textContent = text || ''; return; }
    el.innerHTML = lines.map(l => isGridLine(l)
      ? Array.from(l).map(ch => GRID[ch] ? '<span class="'+GRID[ch]+'">'+esc(ch)+'</span>' : esc(ch)).join('')
      : '<span style="font-size:12px;letter-spacing:0">'+esc(l)+'</span>').join('\n');
  }
  function kvTable(obj, highlight){
    if (obj === null || obj === undefined) return '<i>none</i>';
    if (typeof obj !== 'object') return esc(JSON.stringify(obj));
    const keys = Object.keys(obj);
    if (!keys.length) return '<i>empty</i>';
    return '<table class="kv">' + keys.map(k => {
      const v = obj[k];
      const txt = (v !== null && typeof v === 'object') ? JSON.stringify(v, null, 1) : JSON.stringify(v);
      const hl = highlight && highlight.test(k) ? ' class="hl"' : '';
      return '<tr'+hl+'><td>'+esc(k)+'</td><td><pre>'+esc(txt)+'</pre></td></tr>';
    }).join('') + '</table>';
  }
  function fillRuns(){
    runSel.innerHTML = data.runs.map((r,i) => '<option value="'+i+'">'+esc(r.run)+' ('+r.episodes.length+' episodes)</option>').join('');
  }
  function fillEpisodes(){
    epSel.innerHTML = run.episodes.map((e,i) => '<option value="'+i+'">'+esc(e.phase)+' · seed '+e.seed+' · '+
      (e.success ? 'solved' : 'failed')+' · return '+e.return.toFixed(2)+' · '+e.n_turns+' turns</option>').join('');
  }
  function show(){
    const empty = !ep || !ep.turns.length;
    $('step-label').textContent = empty ? 'no steps' : 'step ' + (step+1) + ' / ' + ep.turns.length +
      (ep.shown_turns < ep.n_turns ? ' (of ' + ep.n_turns + ')' : '');
    $('prev-step').disabled = empty || step <= 0;
    $('next-step').disabled = empty || step >= ep.turns.length - 1;
    if (empty) { ['step-obs','step-after','step-response'].forEach(id => $(id).textContent=''); $('step-info').innerHTML=''; $('step-diagnosis').innerHTML=''; return; }
    const t = ep.turns[step];
    $('episode-head').innerHTML = esc(ep.env)+' · '+esc(ep.split)+' seed '+ep.seed+' · '+
      (ep.success ? '<span class="ok">solved</span>' : '<span class="bad">not solved</span>')+
      ' · return '+ep.return.toFixed(2) + (Object.keys(ep.meta||{}).length ? ' · meta '+esc(JSON.stringify(ep.meta)) : '');
    renderObs($('step-obs'), t.obs, ep.env);
    renderObs($('step-after'), t.after, ep.env);
    $('step-response').textContent = t.response;
    $('step-reward').textContent = 'reward ' + t.reward.toFixed(2) + ' · return so far ' + t.return.toFixed(2) +
      ' · ' + t.tokens + ' tokens' + (t.terminated ? ' · terminated' : '') + (t.truncated ? ' · truncated' : '');
    $('step-diagnosis').innerHTML = kvTable(t.diagnosis);
    $('step-info').innerHTML = kvTable(t.info, /planner|skill|memory|retriev|guardrail|veto|plan/i);
    $('step-prompt').innerHTML = (ep.system ? '<b>system</b> (every step)<pre>'+esc(ep.system)+'</pre>' : '') + t.prompt.map(m => '<b>'+esc(m.role)+'</b><pre>'+esc(m.content)+'</pre>').join('');
  }
  function pickRun(i){ run = data.runs[i]; fillEpisodes(); pickEpisode(0); }
  function pickEpisode(i){ ep = run.episodes[i] || null; step = 0; show(); }
  runSel.addEventListener('change', () => pickRun(+runSel.value));
  epSel.addEventListener('change', () => pickEpisode(+epSel.value));
  $('prev-step').addEventListener('click', () => { if (step > 0) { step--; show(); } });
  $('next-step').addEventListener('click', () => { if (ep && step < ep.turns.length - 1) { step++; show(); } });
  document.addEventListener('keydown', e => {
    if (e.target.tagName === 'SELECT') return;
    if (e.key === 'ArrowRight') $('next-step').click();
    if (e.key === 'ArrowLeft') $('prev-step').click();
  });
  if (data.runs.length) { fillRuns(); pickRun(0); } else { $('viewer').innerHTML = '<i>no trajectories</i>'; }
})();
"""

PAGE = Template("""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$title</title>
<style>$css</style></head>
<body>
<h1>$title</h1>
<p class="note">$subtitle</p>
$body
<h2 id="trajectories">Trajectory viewer</h2>
<p class="note">$viewer_note</p>
<div id="viewer">
 <div class="controls">
  <label>run <select id="run-select"></select></label>
  <label>episode <select id="episode-select"></select></label>
  <button id="prev-step" type="button">&#9664; prev step</button>
  <button id="next-step" type="button">next step &#9654;</button>
  <span id="step-label"></span>
 </div>
 <div id="episode-head" class="note"></div>
 <div class="cols">
  <div class="box"><h4>observation (before the action)</h4><pre id="step-obs"></pre></div>
  <div class="box"><h4>observation after</h4><pre id="step-after"></pre></div>
 </div>
 <div class="cols" style="margin-top:10px">
  <div class="box"><h4>response</h4><pre id="step-response"></pre><div id="step-reward" class="note"></div>
   <h4 style="margin-top:8px">diagnosis</h4><div id="step-diagnosis"></div></div>
  <div class="box"><h4>info (planner decisions, retrieved memory, ... as recorded)</h4><div id="step-info"></div></div>
 </div>
 <details style="margin-top:10px"><summary>prompt messages of this step</summary><div class="box" id="step-prompt"></div></details>
</div>
<script type="application/json" id="viewer-data">$data</script>
<script>$js</script>
</body></html>
""")


def page(title: str, subtitle: str, body_html: str, viewer_data: dict[str, Any], viewer_note: str) -> str:
    return PAGE.substitute(title=html.escape(title), subtitle=html.escape(subtitle), css=CSS, body=body_html,
                           data=_json_for_script(viewer_data), js=JS, viewer_note=html.escape(viewer_note))
