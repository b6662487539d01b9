"""The skill-memory example in the README runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_memory_example_runs(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    (code,) = [b for b in blocks if "from agentsd.memory import SkillMemory" in b and "agentsd.planner" not in b]
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "'added': 8" in out and "[skill |" in out
    assert (tmp_path / "runs" / "demo" / "memory" / "memory.sqlite").exists()
