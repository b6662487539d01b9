"""The rollout prompt: system instructions, a window of past turns, and the current observation.

One function builds it, so rollouts, warm-start demonstrations and (later) the teacher's re-scoring all
see exactly the same format. Skills from memory, when given, go into the system message as a separate
block, so the student prompt without skills is the same prompt minus that block.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Step:
    """One past turn as the prompt shows it."""

    observation: str
    response: str
    valid: bool = True


INVALID_NOTE = "Your previous answer was not a valid action. Answer in the required format."


def build_messages(
    instructions: str,
    task: str,
    observation: str,
    past: list[Step],
    history: int,
    skills: str | None = None,
) -> list[dict[str, str]]:
    """Chat messages for the next turn. ``past`` is the whole episode so far; the last ``history``
    turns are shown as earlier user/assistant exchanges."""
    system = instructions.strip()
    if skills:
        system += "\n\nUseful skills from past experience:\n" + skills.strip()
    messages = [{"role": "system", "content": system}]
    shown = past[-history:] if history > 0 else []
    for step in shown:
        messages.append({"role": "user", "content": step.observation})
        messages.append({"role": "assistant", "content": step.response})
    parts = [task.strip()] if task.strip() else []
    if past and not past[-1].valid:
        parts.append(INVALID_NOTE)
    parts.append(observation.strip())
    messages.append({"role": "user", "content": "\n".join(parts)})
    return messages
