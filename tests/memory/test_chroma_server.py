"""memory.url: the same SkillMemory against a real `chroma run` server on loopback."""

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from memutil import guardrail, skill

from agentsd.memory import SkillMemory


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def chroma_url(tmp_path_factory):
    exe = shutil.which("chroma") or str(Path(sys.executable).with_name("chroma"))
    if not Path(exe).exists():
        pytest.fail("the chroma CLI is missing (it ships with chromadb)")
    port = _free_port()
    data = tmp_path_factory.mktemp("chroma-server")
    proc = subprocess.Popen([exe, "run", "--path", str(data), "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    import urllib.request

    for _ in range(100):
        try:
            urllib.request.urlopen(url + "/api/v2/heartbeat", timeout=1)
            break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("chroma server did not start")
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def test_memory_on_a_chroma_server(tmp_path, embedder, chroma_url):
    with SkillMemory(tmp_path / "side", url=chroma_url, embedder=embedder) as mem:
        s, g = skill(), guardrail()
        rep = mem.add([s, g, guardrail(evidence=["t2"])])
        assert len(rep.added) == 2 and len(rep.merged) == 1
        assert mem.retrieve("push the box right onto the target", k=1)[0].entry.id == s.id
        assert not (tmp_path / "side" / "chroma").exists()  # the index lives on the server
    # a second client (another worker) sees the same index; other namespaces stay apart
    with SkillMemory(tmp_path / "side", url=chroma_url, embedder=embedder) as again:
        assert again.retrieve("corner", k=1, kind="guardrail")[0].entry.id == g.id
    with SkillMemory(tmp_path / "side", url=chroma_url, namespace="other", embedder=embedder) as other:
        assert other.retrieve("corner", k=3) == []


def test_bad_url_is_a_clear_error(tmp_path, embedder):
    from agentsd.memory import MemoryStoreError

    with pytest.raises(MemoryStoreError, match="http://host:port"):
        SkillMemory(tmp_path / "m", url="ftp://x", embedder=embedder)


def test_unreachable_server_is_a_clear_error(tmp_path, embedder):
    from agentsd.memory import MemoryStoreError

    with pytest.raises(MemoryStoreError, match="cannot reach the Chroma server"):
        SkillMemory(tmp_path / "m", url=f"http://127.0.0.1:{_free_port()}", embedder=embedder)
