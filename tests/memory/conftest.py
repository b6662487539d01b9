import pytest


@pytest.fixture
def memory(tmp_path, embedder):
    from agentsd.memory import SkillMemory

    with SkillMemory(tmp_path / "mem", embedder=embedder) as mem:
        yield mem
