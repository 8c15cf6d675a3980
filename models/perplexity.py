"""Token-level perplexity of a causal LM over non-overlapping windows (a quick, mode-independent check).

Each context window of ``context_window`` tokens is scored on its last context_window - 1 tokens, the
first being context only, so every mode of a model sees exactly the same inputs. (lm-eval's rolling windows are the
full evaluation; this is the check conversion and training print.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from tqdm.auto import tqdm


@torch.no_grad()
def token_perplexity(model, ids: Sequence[int], context_window: int = 256, batch_size: int = 4, desc: str = "perplexity") -> dict[str, float]:
    """{'perplexity', 'nll', 'tokens'} over ``len(ids) // context_window`` windows of tokens."""
    if context_window < 2:
        raise ValueError(f"context_window must be >= 2, got {context_window}")
    n_windows = len(ids) // context_window
    if n_windows == 0:
        raise ValueError(f"need at least {context_window} tokens for one context window, got {len(ids)}")
    chunks = torch.tensor(list(ids[: n_windows * context_window]), dtype=torch.long).view(n_windows, context_window)
    nll, count = 0.0, 0
    device = next(model.parameters()).device  # the windows go where the model is
    for start in tqdm(range(0, n_windows, batch_size), desc=desc, leave=False, unit="batch"):
        x = chunks[start : start + batch_size].to(device)
        logits, _ = model(x)
        logprobs = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, x[:, 1:, None])[..., 0]
        if not bool(torch.isfinite(logprobs).all()):
            raise ValueError("the model produced non-finite log-probabilities (NaN or inf logits)")
        nll -= float(logprobs.sum())
        count += logprobs.numel()
    return {"perplexity": math.exp(nll / count), "nll": nll / count, "tokens": count}
