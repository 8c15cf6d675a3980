import os

import torch
from hypothesis import HealthCheck, settings

settings.register_profile(
    "snnbench",
    max_examples=int(os.environ.get("SNNBENCH_HYPOTHESIS_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=os.environ.get("SNNBENCH_HYPOTHESIS_RANDOM") != "1",
)
settings.load_profile("snnbench")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
# eager coding kernels unless a test asks for the compiled ones (tests/test_kernels.py): compiling every shape of
# every test would take minutes; the two backends compute the same bits (test_kernels.py proves it)
os.environ.setdefault("SNNBENCH_KERNELS", "eager")
