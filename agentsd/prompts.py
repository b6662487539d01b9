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


SKILLS_HEADER = "Useful skills from past experience:"
#: The header of opd's reference teacher block (the env oracle's answer for the state).
REFERENCE_HEADER = "Reference answer for this state (from the task's solver):"


def system_message(instructions: str, skills: str | None = None, header: str = SKILLS_HEADER) -> str:
    """The system message: the instructions, then the skills block (under ``header``) when ``skills`` is
    non-empty."""
    system = instructions.strip()
    if skills:
        system += "\n\n" + header + "\n" + skills.strip()
    return system


def with_skills(
    messages: list[dict[str, str]], skills: str | None, header: str = SKILLS_HEADER
) -> list[dict[str, str]]:
    """A copy of ``messages`` whose system message also holds ``skills``, in the format of
    :func:`build_messages`: ``with_skills(build_messages(..., skills=None), s)`` equals
    ``build_messages(..., skills=s)``. The teacher's prompt is built this way from the student's (opd's
    teacher gets its reference answer the same way, under another ``header``). Without a leading system
    message one is inserted; without skills the messages come back unchanged (copied).
    """
    out = [dict(m) for m in messages]
    if not skills:
        return out
    if out and out[0].get("role") == "system":
        out[0]["content"] = system_message(out[0]["content"], skills, header)
    else:
        out.insert(0, {"role": "system", "content": system_message("", skills, header).strip()})
    return out


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
    messages = [{"role": "system", "content": system_message(instructions, skills)}]
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
