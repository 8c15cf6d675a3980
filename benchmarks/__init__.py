"""``snnbench bench``: performance benchmarks (not tests), outside the runtime packages. Every figure is a
ratio of two sides timed in the same process, interleaved, ``repeats`` times, with min / median / max
of each side and of the per-repeat ratio.

| # | module | what | ours | reference | ratio |
|---|--------|------|------|-----------|-------|
| 1 | throughput.py | evaluation throughput: (a) ARC-like loglikelihood, (b) rolling perplexity | adapter, ``ann`` | lm-eval's ``HFLM`` on the same weights | speed ours / reference |
| 2 | throughput.py | the cost of being spiking in simulation, same requests: (a) ARC-like 25-shot, (b) rolling perplexity, (c) ARC-like 0-shot, (d) greedy generation at batch 1/4/8 with the op counters on | adapter, ``snn-fused`` | adapter, ``ann`` | speed |
| 3 | operators.py | what exact simulation costs, per operator kind, same inputs | ``snn`` (time-stepped) | ``snn-fused`` | time snn / snn-fused |
| 4 | instrumentation.py | instrumentation overhead (counters + the usable per-forward meters) | adapter with ``Accounting(count_ops=True, meters)`` | no counters, no meters | time on / off - 1 |
| 5 | flops.py | model FLOP utilization of the ``ann`` forward on long sequences | analytic FLOPs / time | fp32 matmul peak measured in the run | MFU |
| 6 | training.py | training step time, tiny Llama | ``qat`` | ``ann`` | time qat / ann |
| 7 | neuron.py | the spiking core | ``EIIFNeuron`` | SpikingJelly ``IFNode(step_mode='m')`` (optional) | speed |

``runner.py`` runs the chosen ones and writes ``<out>/bench.json`` (rows, machine, versions) and
``<out>/bench.md`` (a table benchmark | ours | reference | ratio (median, min-max) | goal | met?),
atomically; ``timing.py`` times the two sides, ``table.py`` holds the rows and writes the table,
``workload.py`` the sizes, the synthetic requests and the models. Benchmarks 1, 2, 4 and 5 need
SmolLM2 (``snnbench data fetch smollm2-135m``); with ``--quick`` they fall back to a tiny random
Llama and the table says so (goals are then not judged). The requests are synthetic text of a
fixed seed with the shapes of the real tasks (their content does not change the work of a dense
model); FLOPs are counted analytically.
"""
