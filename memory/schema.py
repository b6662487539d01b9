"""Memory entries: skills (what worked) and guardrails (what failed and what to forbid).

Every text field is cleaned on the way in (:func:`agentsd.memory.safety.clean`): control characters,
chat role markers and our own delimiters are removed and the length is capped, so text that came from
an environment or a model can never pose as instructions once rendered into a prompt. Lists are capped
too. ``render()`` gives the compact line injected into prompts (bounded length); ``embed_text()`` the
short text that is embedded (trigger + summary); ``content_hash()`` the normalized identity used for
exact deduplication (counters, ids, times and evidence are not part of it).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

from agentsd.memory.safety import clean

#: Caps on text fields (characters) and list lengths.
MAX_SHORT = 200
MAX_LONG = 600
MAX_STEPS = 24
MAX_ACTIONS = 64
MAX_ITEMS = 8
MAX_EVIDENCE = 64
#: Default cap on one rendered entry (characters).
RENDER_CHARS = 480


def new_id() -> str:
    return uuid.uuid4().hex[:16]


def _clean_list(v: Any, cap: int, length: int) -> list[str]:
    if v is None:
        return []
    if isinstance(v, str):
        v = [v]
    out = []
    for x in v:
        s = clean(str(x), length)
        if s and s not in out:
            out.append(s)
    return out[:cap]


class PredicateRef(BaseModel):
    """A call of one of the env's executable predicates (see ``TextEnv.predicates()``)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    params: dict[str, int | float | str | bool] = Field(default_factory=dict)


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    id: str = Field(default_factory=new_id, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    env: str = Field(min_length=1, max_length=64)
    namespace: str = Field("default", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    #: Situations in which the entry applies (what retrieval matches against).
    triggers: list[str] = Field(min_length=1)
    #: One line: what the entry says.
    summary: str = Field(min_length=1)
    confidence: float = Field(0.5, ge=0.0, le=1.0)
    support: int = Field(1, ge=0)  # independent trajectories that produced it
    usage: int = Field(0, ge=0)  # times it was retrieved into an episode that finished
    upvotes: int = Field(0, ge=0)
    downvotes: int = Field(0, ge=0)
    evidence: list[str] = Field(default_factory=list)  # trajectory ids
    created: float = Field(default_factory=time.time)
    updated: float = Field(default_factory=time.time)
    version: int = Field(1, ge=1)
    status: Literal["active", "retired"] = "active"
    flags: list[str] = Field(default_factory=list)  # e.g. "conflict"
    conflicts_with: list[str] = Field(default_factory=list)
    last_supported: int = Field(0, ge=0)  # memory iteration when last produced or merged
    source: str = Field("manual", max_length=64)  # the summarizer that wrote it

    @field_validator("triggers", mode="before")
    @classmethod
    def _triggers(cls, v: Any) -> list[str]:
        return _clean_list(v, MAX_ITEMS, MAX_SHORT)

    @field_validator("summary", mode="before")
    @classmethod
    def _summary(cls, v: Any) -> str:
        return clean(str(v), MAX_SHORT)

    @field_validator("evidence", mode="before")
    @classmethod
    def _evidence(cls, v: Any) -> list[str]:
        ids = [str(x)[:64] for x in (v or [])]
        return list(dict.fromkeys(ids))[-MAX_EVIDENCE:]

    # --- derived --------------------------------------------------------------------------------
    @property
    def net_votes(self) -> int:
        return self.upvotes - self.downvotes

    @property
    def score_confidence(self) -> float:
        """Confidence adjusted by votes: the stated confidence acts as a prior worth two votes."""
        return (2.0 * self.confidence + self.upvotes) / (2.0 + self.upvotes + self.downvotes)

    @property
    def failure_key(self) -> str:
        return ""

    def content_fields(self) -> dict[str, Any]:
        raise NotImplementedError

    def content_text(self) -> str:
        """All content as one string (for entity matching and conflict checks)."""
        parts: list[str] = []
        for v in self.content_fields().values():
            if isinstance(v, list):
                parts.extend(str(x) for x in v)
            elif v is not None:
                parts.append(str(v))
        return " \n".join(parts)

    def content_hash(self) -> str:
        """Identity for exact dedup: kind, env, failure type and normalized content."""
        body = "\x1f".join([self.kind, self.env, self.failure_key, normalize(self.content_text())])
        return hashlib.sha256(body.encode()).hexdigest()[:32]

    def embed_text(self) -> str:
        """What gets embedded: the triggers and the summary (short: embedding cost grows with length)."""
        lead = f"{self.kind} {self.failure_key}".strip()
        return _cap(f"{lead}: {'; '.join(self.triggers)}. {self.summary}", 400)  # fields are clean already

    def render(self, max_chars: int = RENDER_CHARS, stale: bool = False) -> str:
        raise NotImplementedError

    def _head(self, label: str, stale: bool) -> str:
        tags = [label, self.id[:6], f"conf {self.score_confidence:.2f}", f"support {self.support}"]
        if stale:
            tags.append("stale")
        if "conflict" in self.flags:
            tags.append("conflicting")
        return "[" + " | ".join(tags) + "]"


class Skill(_Entry):
    """What worked: a reusable workflow, when it applies, and how to check it worked."""

    kind: Literal["skill"] = "skill"
    success_analysis: str = ""
    mistake_analysis: str = ""
    golden_workflow: list[str] = Field(min_length=1)
    #: The exact action texts that did it (effective turns, in order), replayable by a planner that
    #: expands the skill; empty when unknown or longer than MAX_ACTIONS. Never rendered into prompts.
    actions: list[str] = Field(default_factory=list)
    preconditions: list[str] = Field(default_factory=list)
    verification: PredicateRef | None = None  # executable, when the env offers a predicate
    verification_text: str = ""
    effects: list[str] = Field(default_factory=list)

    @field_validator("success_analysis", "mistake_analysis", "verification_text", mode="before")
    @classmethod
    def _long(cls, v: Any) -> str:
        return clean(str(v or ""), MAX_LONG)

    @field_validator("golden_workflow", mode="before")
    @classmethod
    def _steps(cls, v: Any) -> list[str]:
        if v is None:
            return []
        if isinstance(v, str):
            v = [v]
        out = [clean(str(x), MAX_SHORT) for x in v]  # steps may repeat: no set semantics here
        return [s for s in out if s][:MAX_STEPS]

    @field_validator("actions", mode="before")
    @classmethod
    def _actions(cls, v: Any) -> list[str]:
        out = [clean(str(x), MAX_SHORT) for x in (v or [])]
        return out if len(out) <= MAX_ACTIONS and all(out) else []

    @field_validator("preconditions", "effects", mode="before")
    @classmethod
    def _items(cls, v: Any) -> list[str]:
        return _clean_list(v, MAX_ITEMS, MAX_SHORT)

    def content_fields(self) -> dict[str, Any]:
        return {
            "triggers": self.triggers,
            "summary": self.summary,
            "success_analysis": self.success_analysis,
            "mistake_analysis": self.mistake_analysis,
            "golden_workflow": self.golden_workflow,
            "actions": self.actions,
            "preconditions": self.preconditions,
            "verification": self.verification.model_dump_json() if self.verification else None,
            "verification_text": self.verification_text,
            "effects": self.effects,
        }

    def render(self, max_chars: int = RENDER_CHARS, stale: bool = False) -> str:
        parts = [self._head("skill", stale), self.summary]
        parts.append("When: " + "; ".join(self.triggers))
        if self.preconditions:
            parts.append("Requires: " + "; ".join(self.preconditions))
        parts.append("Steps: " + " -> ".join(self.golden_workflow))
        check = self.verification_text or (self.verification.name if self.verification else "")
        if check:
            parts.append("Check: " + check)
        return _join(parts, max_chars)


class Guardrail(_Entry):
    """What failed: the failure type, why, the risky pattern, the operation to forbid, and the repair."""

    kind: Literal["guardrail"] = "guardrail"
    failure_type: str = Field(min_length=1, max_length=64)
    root_cause: str = Field(min_length=1)
    risk_pattern: str = Field(min_length=1)
    risk_predicate: PredicateRef | None = None  # executable check run before an action
    forbidden: str = Field(min_length=1)
    forbidden_action: str | None = None  # a literal action to refuse, when the failure is that specific
    repair: list[str] = Field(default_factory=list)
    scope: Literal["step", "subgoal", "task"] = "step"

    @field_validator("root_cause", "risk_pattern", "forbidden", mode="before")
    @classmethod
    def _long(cls, v: Any) -> str:
        return clean(str(v or ""), MAX_LONG)

    @field_validator("forbidden_action", mode="before")
    @classmethod
    def _action(cls, v: Any) -> str | None:
        return clean(str(v), MAX_SHORT) or None if v is not None else None

    @field_validator("repair", mode="before")
    @classmethod
    def _items(cls, v: Any) -> list[str]:
        return _clean_list(v, MAX_ITEMS, MAX_SHORT)

    @property
    def failure_key(self) -> str:
        return self.failure_type

    def content_fields(self) -> dict[str, Any]:
        return {
            "triggers": self.triggers,
            "summary": self.summary,
            "root_cause": self.root_cause,
            "risk_pattern": self.risk_pattern,
            "risk_predicate": self.risk_predicate.model_dump_json() if self.risk_predicate else None,
            "forbidden": self.forbidden,
            "forbidden_action": self.forbidden_action,
            "repair": self.repair,
            "scope": self.scope,
        }

    def render(self, max_chars: int = RENDER_CHARS, stale: bool = False) -> str:
        parts = [self._head(f"guardrail {self.failure_type}", stale), self.summary]
        parts.append("Risk: " + self.risk_pattern)
        parts.append("Never: " + self.forbidden)
        if self.repair:
            parts.append("Instead: " + "; ".join(self.repair))
        return _join(parts, max_chars)

    # --- executable check -------------------------------------------------------------------------
    @property
    def executable(self) -> bool:
        return self.risk_predicate is not None

    def check(self, env: Any, action: str) -> bool:
        """True when ``action`` would break this guardrail in ``env``'s current state. Text-only
        guardrails (no predicate) never veto; a literal ``forbidden_action`` is matched exactly."""
        if self.forbidden_action is not None and normalize(action) == normalize(self.forbidden_action):
            return True
        if self.risk_predicate is None:
            return False
        try:
            return bool(env.check(self.risk_predicate.name, action, **self.risk_predicate.params))
        except (KeyError, ValueError, TypeError):
            return False  # the env does not know this predicate (e.g. memory loaded for another env)


Entry = Annotated[Skill | Guardrail, Field(discriminator="kind")]
_ENTRY = TypeAdapter(Entry)


def parse_entry(data: dict[str, Any] | str) -> Skill | Guardrail:
    """Validate a dict (or JSON text) into a Skill or Guardrail; raises pydantic.ValidationError."""
    if isinstance(data, str):
        return _ENTRY.validate_json(data)
    return _ENTRY.validate_python(data)


def load_entry(data: str) -> Skill | Guardrail:
    """Rebuild an entry this store wrote itself, without re-validating (reads are on the retrieval hot
    path; every entry was validated and cleaned when it was written). Untrusted input goes through
    :func:`parse_entry`."""
    d = json.loads(data)
    cls = Skill if d.get("kind") == "skill" else Guardrail
    for key in ("verification", "risk_predicate"):
        if d.get(key) is not None:
            d[key] = PredicateRef.model_construct(**d[key])
    return cls.model_construct(**d)


def verify(skill: Skill, env: Any) -> bool | None:
    """Run a skill's verification predicate on ``env``'s current state; None when it has none."""
    if skill.verification is None:
        return None
    try:
        return bool(env.check(skill.verification.name, None, **skill.verification.params))
    except (KeyError, ValueError, TypeError):
        return None


# --- text normalization ----------------------------------------------------------------------------
_WS = re.compile(r"\s+")
_PUNCT = re.compile(r"[^\w\s.\-]")


def normalize(text: str) -> str:
    """Lower case, punctuation (except . and -, which numbers need) dropped, whitespace collapsed."""
    return _WS.sub(" ", _PUNCT.sub(" ", text.lower())).strip()


_NUM = re.compile(r"-?\d+(?:\.\d+)?")
_IDENT = re.compile(r"\b\w*(?:[_\d]\w*|[a-z][A-Z]\w*)\b")
_QUOTED = re.compile(r"[\"'`]([^\"'`]{1,40})[\"'`]")
_CAPWORD = re.compile(r"(?<![.!?:]\s)(?<!^)\b[A-Z][a-z]+\b")


def entity_tokens(text: str) -> tuple[str, ...]:
    """Numbers, identifiers (snake_case, with digits, camelCase), quoted strings and capitalized words
    that do not start a sentence, in the order they appear (lower-cased). Two entries whose sequences
    differ are never merged: embeddings barely see numbers and names, so cosine similarity alone would
    merge "3 boxes" into "4 boxes", and "row 3 col 4" into "row 4 col 3" (cosine 0.999): the order
    matters too. A span matched by several patterns, or inside a longer match ("3" of "x3"), counts once."""
    found: dict[tuple[int, int], str] = {}  # (start, end) -> token
    for m in _NUM.finditer(text):
        found[m.span()] = m.group(0)
    for m in _IDENT.finditer(text):
        found.setdefault(m.span(), m.group(0).lower())
    for m in _QUOTED.finditer(text):
        found.setdefault(m.span(1), m.group(1).lower())
    offset = 0
    for line in text.split("\n"):
        lead = len(line) - len(line.lstrip())
        for m in _CAPWORD.finditer(line.strip()):
            start = offset + lead + m.start()
            found.setdefault((start, start + len(m.group(0))), m.group(0).lower())
        offset += len(line) + 1
    spans = sorted(found, key=lambda sp: (sp[0], -sp[1]))  # by start, the longer match first
    out, end = [], -1
    for sp in spans:
        if sp[1] <= end:  # inside the previous match
            continue
        out.append(found[sp])
        end = max(end, sp[1])
    return tuple(out)


def _join(parts: list[str], max_chars: int) -> str:
    head, *rest = parts
    return _cap(head + " " + " ".join(p.rstrip(".") + "." for p in rest if p), max_chars)


def _cap(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1].rstrip() + "…"
