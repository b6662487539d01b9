"""The apps sandbox under bad input: each escape attempt is blocked with a clear observation, the host
is not harmed, and the warm worker keeps working (or is restarted) for the next step."""

import os
import time
from pathlib import Path

import pytest

from agentsd.envs.apps import AppsEnv, AppsFailure, Sandbox
from agentsd.envs.apps.worker import check_code

F = AppsFailure
SEED = AppsEnv.test_seeds.start


def py(code: str) -> str:
    return f"```python\n{code}\n```"


@pytest.fixture(scope="module")
def env():
    e = AppsEnv(cpu_seconds=1.0, wall_seconds=6.0, output_limit=2000, max_steps=10**6)
    e.reset(seed=SEED)
    yield e
    e.close()


def run(env, code):
    obs, r, term, trunc, info = env.step(py(code))
    return obs, info["diagnosis"]["failure_type"], info


def still_works(env):
    obs, fail, _ = run(env, "print(6 * 7)")
    assert obs.startswith("42") and fail is None


@pytest.mark.parametrize(
    "code,says",
    [
        ("print(open('/etc/passwd').read())", "no file system access"),
        ("with open('/tmp/pwned', 'w') as f:\n    f.write('x')", "no file system access"),
        ("import os\nos.system('echo pwned')", "import of 'os' is not allowed"),
        ("from os import system", "import of 'os' is not allowed"),
        ("import os.path", "import of 'os.path' is not allowed"),
        ("__import__('os').system('id')", "'__import__' is not allowed"),
        ("import subprocess\nsubprocess.run(['id'])", "import of 'subprocess' is not allowed"),
        ("import socket\nsocket.create_connection(('example.com', 80))", "import of 'socket' is not allowed"),
        ("import importlib", "import of 'importlib' is not allowed"),
        ("import sys\nsys.modules['os']", "import of 'sys' is not allowed"),
        ("().__class__.__bases__[0].__subclasses__()", "not allowed"),
        ("[c for c in ().__class__.__base__.__subclasses__() if c.__name__ == 'Popen']", "not allowed"),
        ("print.__self__", "not allowed"),
        ("__builtins__['open']", "'__builtins__' is not allowed"),
        ("g = (x for x in [1])\ng.gi_frame.f_globals", "is not allowed"),
        ("def f():\n    pass\nf.__globals__", "'__globals__'"),
        ("eval('1+1')", "eval is not available"),
        ("exec('import os')", "exec is not available"),
        ("compile('1', 'x', 'eval')", "compile is not available"),
        ("type(1)", "type() is not available"),
        ("int.mro()", "'mro' is not allowed"),
        ("'{0.__class__}'.format(1)", "strings containing '__'"),
        ("getattr(1, '_' + '_class_' + '_')", "getattr of '__class__' is not allowed"),
        ("globals()['apis']", "globals() is not available"),
    ],
)
def test_escape_attempts_are_blocked(env, code, says, tmp_path):
    obs, fail, info = run(env, code)
    assert fail == F.SANDBOX_VIOLATION.value, obs
    assert says in obs, obs
    assert not Path("/tmp/pwned").exists()
    still_works(env)


def test_static_check_agrees_with_the_worker():
    assert check_code("import os")[1] == "sandbox_violation"
    assert check_code("import json, math\nx = json.dumps([math.pi])")[1] is None
    assert check_code("open = print\nopen('hi')")[1] is None  # a cell's own name is fine
    assert check_code("def f(:\n")[1] == "syntax_error"


def test_string_formatter_is_not_exposed(env):
    obs, fail, _ = run(env, "import string\nstring.Formatter().get_field('0', [1], {})")
    assert fail == F.CODE_ERROR.value and "AttributeError" in obs
    obs, fail, _ = run(env, "import string\nprint(string.ascii_lowercase[:3])")
    assert obs.startswith("abc") and fail is None


def test_worker_process_is_locked_down(env):
    pid = env.sandbox.pid
    assert pid is not None and pid != os.getpid()
    limits = Path(f"/proc/{pid}/limits").read_text()
    nofile = next(line for line in limits.splitlines() if line.startswith("Max open files")).split()
    assert nofile[3] == "3"
    mem = next(line for line in limits.splitlines() if line.startswith("Max address space")).split()
    assert mem[3] != "unlimited"
    if os.geteuid() == 0:
        uid = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("Uid:"))
        assert uid.split()[1] == "65534"  # dropped to nobody


def test_infinite_loop_hits_the_cpu_limit_and_the_next_step_works(env):
    run(env, "kept = 'yes'")
    pid = env.sandbox.pid
    t0 = time.monotonic()
    obs, fail, _ = run(env, "while True:\n    pass")
    assert fail == F.TIMEOUT.value and "CPU time" in obs
    assert time.monotonic() - t0 < 6.5
    assert env.sandbox.pid == pid  # interrupted in place, the worker stays warm
    obs, fail, _ = run(env, "print(kept)")
    assert obs.startswith("yes")


def test_a_loop_that_swallows_the_interrupt_is_killed_by_the_wall_clock(env):
    pid = env.sandbox.pid
    obs, fail, _ = run(env, "while True:\n    try:\n        while True:\n            pass\n    except:\n        pass")
    assert fail == F.TIMEOUT.value and "killed" in obs and "restarted" in obs
    assert env.sandbox.pid != pid
    still_works(env)


def test_huge_allocation_hits_the_memory_limit(env):
    obs, fail, _ = run(env, "x = bytearray(8 * 1024 ** 3)")
    assert fail == F.MEMORY_LIMIT.value and "MemoryError" in obs
    obs, fail, _ = run(env, "y = 'a' * (2 ** 33)")
    assert fail == F.MEMORY_LIMIT.value
    still_works(env)


def test_printing_gigabytes_is_truncated(env):
    obs, fail, _ = run(env, "for i in range(10 ** 6):\n    print('x' * 10000)")
    assert "output truncated" in obs and len(obs) < 4000
    still_works(env)


def test_deep_recursion_is_an_ordinary_error(env):
    obs, fail, _ = run(env, "def f(n):\n    return f(n + 1)\nf(0)")
    assert fail == F.CODE_ERROR.value and "RecursionError" in obs
    still_works(env)


def test_api_call_budget_is_enforced():
    e = AppsEnv(api_budget=5)
    e.reset(seed=SEED)
    obs, _, _, _, info = e.step(py("for i in range(8):\n    r = apis.phone.show_alarms(access_token='x')\nprint(r)"))
    assert info["diagnosis"]["failure_type"] == F.BUDGET_EXCEEDED.value
    assert "budget_exceeded" in obs and info["api_calls"] == 8
    e.close()


def test_too_long_code_is_invalid(env):
    _, _, _, _, info = env.step(py("x = 1\n" * 5000))
    assert not info["action_is_valid"]


def test_close_kills_the_worker():
    sb = Sandbox()
    sb.start()
    pid = sb.pid
    assert pid is not None
    sb.close()
    for _ in range(50):
        if not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]:
            break
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


def test_warm_step_is_fast(env):
    still_works(env)
    times = []
    for _ in range(20):
        t0 = time.perf_counter()
        run(env, "x = apis.api_docs.show_app_descriptions()['data']\nlen(x)")
        times.append(time.perf_counter() - t0)
    times.sort()
    assert times[len(times) // 2] < 0.05


def test_a_huge_api_argument_is_refused(env):
    obs, fail, _ = run(env, "apis.notes.create_note(access_token='x', title='big', content='y' * (3 * 1024 * 1024))")
    assert fail == F.SANDBOX_VIOLATION.value and "bytes" in obs
    still_works(env)
