"""The allocator setting: applied once, and the opt-out is honoured."""

import os
import subprocess
import sys

from harness.allocator import tune_allocator


def _in_fresh_process(env_extra: dict[str, str]) -> str:
    code = "from harness.allocator import tune_allocator; print(tune_allocator(), tune_allocator())"
    env = {**os.environ, **env_extra}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env, cwd=os.getcwd()).stdout.split()


def test_applied_once_and_stable():
    assert tune_allocator() == tune_allocator()
    first, second = _in_fresh_process({"SNNBENCH_SYSTEM_MALLOC": "0"})
    assert first == second
    if sys.platform.startswith("linux") and os.path.exists("/lib/x86_64-linux-gnu/libc.so.6"):
        assert first == "True"


def test_opt_out_keeps_system_defaults():
    assert _in_fresh_process({"SNNBENCH_SYSTEM_MALLOC": "1"}) == ["False", "False"]
