"""Several processes writing to one store, and a writer killed with SIGKILL mid-stream."""

import os
import signal
import subprocess
import sys
import textwrap

from agentsd.memory import SkillMemory
from agentsd.memory.store import collection_name

WRITER = textwrap.dedent(
    """
    import sys
    from agentsd.memory import Guardrail, SkillMemory
    path, tag, n, shared = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    words = ["wall", "corner", "target", "loop", "door", "ladder", "river", "bridge", "forest", "cave"]
    mem = SkillMemory(path)
    print("ready", flush=True)
    for i in range(n):
        items = [("distinct", i, f"worker {tag} keeps the box away from the {words[i % 10]} in room {i}", [f"{tag}-{i}"])]
        if i < shared:
            items.append(("shared", i, f"everyone avoids the {words[i % 10]} trap number {i}", [f"{tag}-s{i}"]))
        for what, k, text, ev in items:
            g = Guardrail(env="sokoban", triggers=[f"situation {what} {k}"], summary=text,
                          failure_type="deadlock_corner", root_cause="r", risk_pattern="p",
                          forbidden="f", evidence=ev)
            rep = mem.add(g)
            print("added", (rep.added or [m[1] for m in rep.merged])[0], flush=True)
    mem.close()
    """
)


def _spawn(path, tag, n, shared):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), tag, str(n), str(shared)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )


def _index_ids(mem):
    return set(mem.index.ids(collection_name(mem.namespace, "sokoban", "guardrail")))


def test_two_processes_write_one_store_without_loss_or_duplicates(tmp_path, embedder):
    path = tmp_path / "m"
    SkillMemory(path, embedder=embedder).close()  # created once; both writers open it
    procs = [_spawn(path, tag, 25, 10) for tag in ("7", "8")]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    with SkillMemory(path, embedder=embedder) as mem:
        active = mem.entries()
        assert len(active) == 2 * 25 + 10
        assert len({e.content_hash() for e in active}) == len(active)  # no duplicates
        shared = [e for e in active if e.summary.startswith("everyone")]
        assert len(shared) == 10 and all(e.support == 2 for e in shared)
        assert {x for e in shared for x in e.evidence} == {f"{t}-s{i}" for t in "78" for i in range(10)}
        assert _index_ids(mem) == {e.id for e in active}  # the vector index lost nothing either
        for e in active[::7]:
            hits = mem.retrieve(e.embed_text(), k=10, kind="guardrail", mmr=1.0)
            assert e.id in [h.entry.id for h in hits]


def test_entries_whose_add_returned_survive_kill_9(tmp_path, embedder):
    path = tmp_path / "m"
    SkillMemory(path, embedder=embedder).close()
    p = _spawn(path, "k", 400, 0)
    assert p.stdout.readline().strip() == "ready"
    returned = []
    while len(returned) < 40:
        line = p.stdout.readline()
        assert line, p.stderr.read()[-2000:]
        returned.append(line.split()[1])
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=30)
    with SkillMemory(path, embedder=embedder) as mem:  # opens cleanly and finishes pending index updates
        have = {e.id for e in mem.entries()}
        assert set(returned) <= have
        assert _index_ids(mem) == have
        assert all(mem.get(i) is not None for i in returned)
