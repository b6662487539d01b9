"""Planner settings: one pydantic model, used by the run config (``planner:`` section) and the API.

Kept free of heavy imports so ``agentsd --help`` and config validation stay fast.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class PlannerConfig(BaseModel):
    """The LangGraph planner loop: retrieve -> plan -> act -> check -> step -> diagnose -> replan -> reflect.

    The four ablation switches (``retrieval``, ``guardrails``, ``replan``, ``reflect``) turn one part of
    the loop off each, so a sweep can show what each contributes. With ``retrieval`` off the memory is
    never read; with ``guardrails`` off guardrails are still shown to the policy as text but never veto.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # --- ablation switches ----------------------------------------------------------------------------
    #: Read skills and guardrails from memory into the prompt (and for checks, plans and expansion).
    retrieval: bool = True
    #: Run executable guardrails before each action; a hit vetoes the action.
    guardrails: bool = True
    #: Regenerate the unfinished part of the plan when a trigger fires.
    replan: bool = True
    #: At episode end (train split only): summarize the episode into memory and vote on used entries.
    reflect: bool = True
    #: Expand a retrieved skill whose preconditions hold into its workflow steps (each still checked).
    expand_skills: bool = True

    # --- retrieval ------------------------------------------------------------------------------------
    #: Entries retrieved per turn, and the token budget of their rendered text.
    k: int = Field(4, ge=1)
    budget_tokens: int = Field(240, ge=16)

    # --- planning -------------------------------------------------------------------------------------
    #: Most subgoals in a plan (finished ones included).
    max_plan_steps: int = Field(5, ge=1, le=20)
    plan_max_new_tokens: int = Field(64, ge=8)

    # --- guardrail checks -----------------------------------------------------------------------------
    #: Proposals per turn: after this many vetoes the loop gives up on the turn's guardrails and steps the
    #: last proposal (recorded as ``exhausted`` in the trace), so an episode can never stall. With
    #: ``mask_vetoed`` on an env with action candidates this only happens when every candidate is forbidden.
    max_vetoes: int = Field(3, ge=0)
    #: Sampling temperature for a re-proposal after a veto (greedy decoding would repeat itself).
    retry_temperature: float = Field(0.8, ge=0.0)
    #: Where the env lists its actions (``TextEnv.action_candidates``), a veto masks the forbidden ones:
    #: the re-proposal is decoded within the candidates no retrieved guardrail forbids (regex-constrained,
    #: at the act temperature), so even a policy that repeats itself changes its action; a policy that
    #: ignores the constraint gets one of the allowed candidates instead. A vetoed action then never runs
    #: while an allowed one exists. Off (or an open-ended env): re-propose at ``retry_temperature``.
    mask_vetoed: bool = True

    # --- replanning triggers (MineEvolve-style) ----------------------------------------------------------
    #: Replan when at least this fraction of the last ``failure_window`` steps failed ...
    failure_rate: float = Field(0.5, gt=0.0, le=1.0)
    failure_window: int = Field(4, ge=2)
    #: ... or progress has been flat for this many steps ...
    stagnation: int = Field(4, ge=1)
    #: ... or one failure type was seen under this many different subgoals.
    repeat_subgoals: int = Field(2, ge=2)
    #: Steps after a replan before another trigger may fire, and the most replans per episode.
    cooldown: int = Field(2, ge=0)
    max_replans: int = Field(4, ge=0)

    # --- skill expansion --------------------------------------------------------------------------------
    #: A skill expands only when it was retrieved with at least this similarity to the task and state.
    expand_min_similarity: float = Field(0.85, ge=0.0, le=1.0)

    #: Episodes run concurrently; their policy calls are batched into one generate call.
    batch: int = Field(8, ge=1)
    #: Keep LangGraph checkpoints of every episode in ``<run dir>/planner.sqlite`` (inspect / resume).
    checkpoint: bool = True
