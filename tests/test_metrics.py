import math

from agentsd.metrics import mean_ci, summarize, wilson
from agentsd.trajectory import Trajectory, Turn


def test_wilson_known_values():
    lo, hi = wilson(0, 10)
    assert lo == 0.0 and math.isclose(hi, 0.2775, abs_tol=1e-3)
    lo, hi = wilson(5, 10)
    assert math.isclose(lo, 0.2366, abs_tol=1e-3) and math.isclose(hi, 0.7634, abs_tol=1e-3)
    assert wilson(0, 0) == (0.0, 0.0)


def test_mean_ci():
    m, h = mean_ci([1.0, 2.0, 3.0])
    assert m == 2.0 and math.isclose(h, 1.959964 * 1.0 / math.sqrt(3), rel_tol=1e-6)
    assert mean_ci([4.0]) == (4.0, 0.0)


def _traj(success: bool, invalid: int, n: int) -> Trajectory:
    turns = [Turn(messages=[], response="x", info={"action_is_valid": i >= invalid, "success": False}, reward=-0.1)
             for i in range(n)]
    turns[-1].info["success"] = success
    turns[-1].terminated = True
    return Trajectory(env="t", seed=0, turns=turns)


def test_summarize_counts():
    m = summarize([_traj(True, 1, 4), _traj(False, 0, 4)])
    assert m["episodes"] == 2 and m["success"] == 0.5
    assert m["invalid_rate"] == 1 / 8
    assert m["turns_to_success"] == 4
