"""Fused coding chains of the ``snn-fused`` mode: one pass over a tensor where eager PyTorch makes ten.

Coding an activation in closed form is a chain of elementwise operations around one row reduction
(``quant.py``, eq. 2-3 and 6-10): s = clip max|x / f| / T per token, v = x / (s f), n = clamp(round_half_away(v),
-T, T). Op by op that is about ten passes over the tensor, more time than the matrix product it feeds.
Each chain is written here once, in torch operations, and runs in one of two ways:

- ``compiled``: ``torch.compile`` (inductor) turns each chain into one loop nest. On a CPU inductor keeps
  division by a tensor a division and contracts no multiply-add (its defaults: ``cpp.enable_floating_point_
  contract_flag`` off, unsafe math off), and every operation of a chain is an IEEE operation rounded once, so
  the compiled chain computes the very bits of the eager one; integer sums (spike counts) are exact in any order.
- ``eager``: the same function run op by op, i.e. the operations the reference path has always run.

``backend()`` picks one, once per process and device type: ``SNNBENCH_KERNELS=eager`` or ``compiled`` forces it;
the default ``auto`` compiles on a CPU with a C++ compiler and keeps the compiled chains only if they reproduce the
eager ones bit for bit on a probe of ties and near-ties; it falls back to eager otherwise (and on GPUs, where
inductor may divide by a reciprocal) and says why (``backend_report``). Compiled code is cached on disk by
inductor, so the compile time (``compile_seconds``: about a minute on a first run, seconds after) is paid once per machine.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

BACKENDS = ("auto", "compiled", "eager")
SMALL = 2**16  # elements below which the compiled backend runs a chain eagerly (the same bits either way)
ENV = "SNNBENCH_KERNELS"


def counts_of(v: torch.Tensor, time_steps: int) -> torch.Tensor:
    """clamp(round_half_away(v), -T, T) (``quant.quantize_counts``) as one expression: floor(|v|) + [frac >= 0.5],
    the sign of v, clamped. The same IEEE operations as the in-place form, so the same bits."""
    a = v.abs()
    f = a.floor()
    return (f + (a - f >= 0.5).to(v.dtype)).copysign(v).clamp(-time_steps, time_steps)


def token_counts(
    x: torch.Tensor, mult: torch.Tensor | None, factor: torch.Tensor | None, clip: torch.Tensor, steps: torch.Tensor,
    time_steps: int, dim: int, tally: bool, dequantize: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The closed-form code of a per-token (``dim``) scaled activation x' = x * mult (mult: e.g. the value scales
    folded into attention weights; None: x), smoothed by ``factor`` (None: no smoothing):

        s = where(clip max|x' / f| / T > 0, ..., 1),  n = counts_of(x' / (s f), T_clamp)

    ``steps`` is the coding range T as a 0-d tensor (the scale's divisor), ``time_steps`` the clamp (a Synapsis
    window may be shorter). Returns (n, s, max |v| per token: finite iff x is, spikes sum |n| per token or None);
    with ``dequantize`` n (s f) in place of n (what a differential operator reads)."""
    xm = x if mult is None else x * mult
    xs = xm if factor is None else xm / factor
    amax = xs.abs().amax(dim, keepdim=True)
    s = amax * clip / steps
    token = torch.where(s > 0, s, torch.ones_like(s))
    scale = token if factor is None else token * factor
    v = xm / scale
    n = counts_of(v, time_steps)
    return (n * scale if dequantize else n), token, v.abs().amax(dim, keepdim=True), (n.abs().sum(dim, keepdim=True) if tally else None)


def scaled_scores(product: torch.Tensor, sa: torch.Tensor, sb: torch.Tensor, mask_bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention scores p (s_a s_b) from the count product p, without an (M, N) tensor of s_a s_b, plus ``mask_bias``
    (0 where a key may be seen, -inf where not: the softmax then gives exactly what ``SNNSoftmax``'s masking with the
    lowest finite value gives, exp underflows to 0 either way); and max |p s_a s_b| per row (finite iff the scores are).
    An added bias, not a select: inductor vectorizes a broadcast float far better than a broadcast bool."""
    scores = product * (sa * sb)
    check = scores.abs().amax(-1, keepdim=True)
    return (scores if mask_bias is None else scores + mask_bias), check


def staircase_lookup(x: torch.Tensor, low: torch.Tensor, inv_width: torch.Tensor, buckets: int, bp: torch.Tensor,
                     left: torch.Tensor, right: torch.Tensor, left_k: torch.Tensor | None, right_k: torch.Tensor | None,
                     ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """``lookup.BucketLookup`` of a staircase (B.2.2) in one pass: the bucket of x, the side of its breakpoint,
    the output (and the spike counts summed per row, where their tables are given), and max |x| per row (finite iff
    x is)."""
    b = (x - low).mul(inv_width).floor().clamp(0, buckets - 1).long()
    above = x >= bp[b]
    out = torch.where(above, right[b], left[b])
    spikes = torch.where(above, right_k[b], left_k[b]).sum(-1, keepdim=True) if left_k is not None else None
    return out, spikes, x.abs().amax(-1, keepdim=True)


def prefix_pairs(na: torch.Tensor, prefix: torch.Tensor, time_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The spike pairs of a rate-coded product a . b counted from b's kept firing prefix (``fast.query_tallies``):
    sum over (m, k) of prefix[k, min(|n_a,mk|, T)], with na (B, G, R, K) (R: the rows of every query head of a kv
    group) and prefix (B, G, K, T + 1); and sum |n_a|. Integer sums, exact in any order."""
    reach = na.abs().clamp(max=time_steps).long()
    pairs = prefix.unsqueeze(2).expand(-1, -1, na.shape[2], -1, -1).gather(-1, reach.unsqueeze(-1)).sum()
    return pairs, na.abs().long().sum()


def multiply_pairs(na: torch.Tensor, nb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """sum |n_a|, sum |n_b| and sum min(|n_a|, |n_b|) of a rate-coded elementwise product (``fast.multiply_tallies``)."""
    a, b = na.abs().long(), nb.abs().long()
    return a.sum(), b.sum(), torch.minimum(a, b).sum()


def staircase_product(
    gate: torch.Tensor, up: torch.Tensor, low: torch.Tensor, inv_width: torch.Tensor, buckets: int, bp: torch.Tensor,
    left: torch.Tensor, right: torch.Tensor, left_k: torch.Tensor | None, right_k: torch.Tensor | None,
    clip_a: torch.Tensor, clip_b: torch.Tensor, steps_a: torch.Tensor, steps_b: torch.Tensor, time_steps_a: int, time_steps_b: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, tuple | None]:
    """SwiGLU's spiking middle in one pass: a = staircase(gate) (``staircase_lookup``), a and up coded per token
    (``token_counts``), out = (n_a n_b)(s_a s_b) as ``SNNMultiply`` computes it (float32 products of counts are exact
    below 2^24). Returns (out, a per-row max that is finite iff gate and up are, the staircase's spikes per row
    or None, and with the spike tables the rate tallies of ``multiply_pairs`` or None)."""
    a, staircase_spikes, gate_check = staircase_lookup(gate, low, inv_width, buckets, bp, left, right, left_k, right_k)
    na, sa, a_check, _ = token_counts(a, None, None, clip_a, steps_a, time_steps_a, -1, False)
    nb, sb, b_check, _ = token_counts(up, None, None, clip_b, steps_b, time_steps_b, -1, False)
    out = (na * nb) * (sa * sb)
    check = gate_check + a_check + b_check  # NaN or inf in any of them shows in the sum
    return out, check, staircase_spikes, (multiply_pairs(na, nb) if left_k is not None else None)


CHAINS: dict[str, Callable] = {
    "token_counts": token_counts, "scaled_scores": scaled_scores, "staircase_lookup": staircase_lookup,
    "prefix_pairs": prefix_pairs, "multiply_pairs": multiply_pairs, "staircase_product": staircase_product,
}


@dataclass
class Backend:
    name: str  # "compiled" or "eager"
    reason: str
    compile_seconds: float = 0.0  # spent in calls that compiled a graph (or loaded it from inductor's disk cache)
    graphs: int = 0
    chains: dict[str, Callable] | None = None

    def timed(self, fn: Callable) -> Callable:
        """``torch.compile(fn)``, adding the time of each call that makes a new graph to ``compile_seconds``."""
        from torch._dynamo.utils import counters as dynamo_counters

        compiled = torch.compile(fn, dynamic=True)
        stats = dynamo_counters["stats"]

        def call(*args):
            if args[0].numel() < SMALL:  # a decode step's few rows: the ops themselves cost less than a graph's dispatch
                return fn(*args)
            before = stats["unique_graphs"]
            started = time.perf_counter()
            out = compiled(*args)
            if stats["unique_graphs"] != before:
                self.compile_seconds += time.perf_counter() - started
                self.graphs += stats["unique_graphs"] - before
            return out

        return call


_BACKENDS: dict[str, Backend] = {}


def requested() -> str:
    """The backend asked for by ``SNNBENCH_KERNELS`` (default auto); a one-line error for another value."""
    value = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if value not in BACKENDS:
        raise ValueError(f"{ENV}={value!r} is not a kernel backend; use one of {', '.join(BACKENDS)} (default auto)")
    return value


def backend(device: torch.device | str = "cpu") -> Backend:
    """The kernels for ``device``'s type, chosen on first use (``SNNBENCH_KERNELS``; see the module docstring)."""
    kind = torch.device(device).type
    if kind not in _BACKENDS:
        _BACKENDS[kind] = _choose(kind, requested())
    return _BACKENDS[kind]


def reset() -> None:
    """Forget the chosen backends (tests; a changed ``SNNBENCH_KERNELS``)."""
    _BACKENDS.clear()


def backend_report(device: torch.device | str = "cpu") -> str:
    """One line: which kernels run and why, with the compile time spent so far."""
    b = backend(device)
    spent = f"; {b.graphs} graphs, {b.compile_seconds:.1f} s compiling or loading them from inductor's disk cache" if b.name == "compiled" else ""
    return f"{b.name} coding kernels ({b.reason}{spent})"


def chosen() -> dict[str, str]:
    """The backend reports of the device types that have chosen one so far (none chosen: {})."""
    return {kind: backend_report(kind) for kind in _BACKENDS}


def _eager(reason: str) -> Backend:
    return Backend("eager", reason, chains=dict(CHAINS))


def _choose(kind: str, wanted: str) -> Backend:
    if wanted == "eager":
        return _eager(f"{ENV}=eager")
    if wanted == "auto" and kind != "cpu":
        return _eager(f"auto keeps eager kernels on {kind}: compiled division there may round differently")
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
    if kind == "cpu" and compiler is None:
        if wanted == "compiled":
            raise ValueError(f"{ENV}=compiled needs a C++ compiler for torch.compile on the CPU (none of g++, c++, clang++ found); install one or use {ENV}=auto")
        return _eager("no C++ compiler found for torch.compile")
    try:
        import torch._dynamo

        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
        made = Backend("compiled", "")
        made.chains = {name: made.timed(fn) for name, fn in CHAINS.items()}
        agrees = _probe(made.chains, kind)
    except Exception as error:  # noqa: BLE001 - any failure of the compiler means eager kernels
        if wanted == "compiled":
            raise ValueError(f"{ENV}=compiled: torch.compile failed ({type(error).__name__}: {str(error).splitlines()[0][:200]}); use {ENV}=auto") from None
        return _eager(f"torch.compile failed: {type(error).__name__}")
    if not agrees:
        if wanted == "compiled":
            raise ValueError(f"{ENV}=compiled: the compiled kernels differ from the eager ones on the probe; use {ENV}=auto")
        return _eager("the compiled kernels differed from the eager ones on the probe")
    made.reason = f"torch.compile, inductor, {os.path.basename(compiler) if compiler else kind}; equal to eager on the probe"
    return made


def _probe(chains: dict[str, Callable], kind: str) -> bool:
    """Run each compiled chain beside its eager twin on inputs made of ties (k + 1/2), their float neighbours,
    zeros, negatives and large values; True when every output agrees bit for bit."""
    g = torch.Generator().manual_seed(0)
    halves = torch.arange(-40, 41, dtype=torch.float32) + 0.5
    near = torch.cat([halves, torch.nextafter(halves, halves + 1), torch.nextafter(halves, halves - 1), torch.zeros(3)])
    x = torch.cat([near, torch.randn(256 - near.numel(), generator=g) * 30]).reshape(4, 64).to(kind)
    factor = (torch.rand(64, generator=g) + 0.5).to(kind)
    clip, steps = torch.tensor(0.9, device=kind), torch.tensor(127.0, device=kind)
    mult = (torch.rand(1, 64, generator=g) * 3).to(kind)
    bp = torch.sort(torch.rand(32, generator=g) * 16 - 8).values.to(kind)
    left, right = torch.randn(32, generator=g).to(kind), torch.randn(32, generator=g).to(kind)
    left_k, right_k = torch.randint(0, 9, (32,), generator=g).to(kind), torch.randint(0, 9, (32,), generator=g).to(kind)
    cases = [
        ("token_counts", (x, None, None, clip, steps, 127, -1, True)),
        ("token_counts", (x, mult, factor, clip, steps, 100, -1, False)),
        ("token_counts", (x, None, factor, clip, steps, 127, -1, True, True)),
        ("token_counts", (x.t().contiguous(), None, None, clip, steps, 127, -2, True)),
        ("scaled_scores", (x.round(), torch.rand(4, 1, generator=g).to(kind), torch.rand(1, 64, generator=g).to(kind),
                           torch.where(torch.rand(4, 64, generator=g) > 0.3, 0.0, float("-inf")).to(kind))),
        ("prefix_pairs", (x.round().clamp(-127, 127).reshape(1, 2, 2, 64), torch.randint(0, 999, (1, 2, 64, 101), generator=g).to(kind), 100)),
        ("multiply_pairs", (x.round(), x.flip(0).round())),
        ("staircase_lookup", (x, torch.tensor(-8.0, device=kind), torch.tensor(2.0, device=kind), 32, bp, left, right, left_k, right_k)),
    ]
    global SMALL
    small, SMALL = SMALL, 0  # the probe's tensors are small: compiled all the same
    try:
        with torch.no_grad():
            return all(_agree(chains[name](*args), CHAINS[name](*args)) for name, args in cases)
    finally:
        SMALL = small


KEY_ALIGN = 64  # a block of attention rows that sees only the first keys keeps a multiple of this many (or all)
_TAIL_FREE: dict[str, bool] = {}


def softmax_ignores_masked_tail(device: torch.device | str = "cpu") -> bool:
    """Whether ``torch.softmax`` of a row cut after a multiple of ``KEY_ALIGN`` entries, every later entry being -inf,
    gives the very bits the whole row's softmax gives there (exp(-inf) = 0 adds nothing to a sum whose vector lanes
    go by index, as the CPU kernel's do; a cut off the lane width, or another kernel, may sum in another order).
    Checked once per device type on a probe of lengths and cuts, float32 and float64; where it fails, attention
    keeps every key (``blocks.SoftmaxAttention``)."""
    kind = torch.device(device).type
    if kind not in _TAIL_FREE:
        _TAIL_FREE[kind] = _probe_masked_tail(kind)
    return _TAIL_FREE[kind]


def _probe_masked_tail(kind: str) -> bool:
    g = torch.Generator().manual_seed(1)
    for dtype in (torch.float32, torch.float64):
        for length in (65, 100, 128, 129, 200, 256, 300, 511, 512, 513, 1000, 1024, 1500, 2049):
            for cut in range(KEY_ALIGN, length, KEY_ALIGN):
                x = torch.randn(4, length, generator=g, dtype=dtype) * (1 + 30 * torch.rand(4, 1, generator=g, dtype=dtype))
                seen = torch.randint(1, cut + 1, (4, 1), generator=g)
                x.masked_fill_(torch.arange(length) >= seen, float("-inf"))
                x.masked_fill_((torch.rand(4, length, generator=g) < 0.2) & (torch.arange(length) > 0), float("-inf"))
                x = x.to(kind)
                whole, part = torch.softmax(x, -1)[:, :cut], torch.softmax(x[:, :cut].contiguous(), -1)
                if not torch.equal(_bits(whole), _bits(part)):
                    return False
    return True


def _agree(got_outputs: tuple, want_outputs: tuple) -> bool:
    """Every output of a chain equal bit for bit (None where the other is None)."""
    for got, want in zip(got_outputs, want_outputs):
        if (got is None) != (want is None):
            return False
        if got is not None and not (got.shape == want.shape and torch.equal(_bits(got), _bits(want))):
            return False
    return True


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The tensor's bit patterns (a float's sign of zero and NaN payload included)."""
    if t.dtype == torch.float32:
        return t.contiguous().view(torch.int32)
    if t.dtype == torch.float64:
        return t.contiguous().view(torch.int64)
    return t
