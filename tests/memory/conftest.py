import pytest


@pytest.fixture(scope="session")
def embedder():
    """One real embedder (all-MiniLM-L6-v2; onnx when available) shared by the memory tests."""
    from agentsd.memory import Embedder

    return Embedder()


@pytest.fixture
def memory(tmp_path, embedder):
    from agentsd.memory import SkillMemory

    with SkillMemory(tmp_path / "mem", embedder=embedder) as mem:
        yield mem
