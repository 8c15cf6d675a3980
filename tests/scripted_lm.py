"""A scripted language model for testing task configs: every answer is decided by the test."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lm_eval.api.model import LM

TASKS_DIR = Path(__file__).resolve().parents[1] / "tasks"


class ScriptedLM(LM):
    """``loglikelihood(context, continuation) -> (logprob, is_greedy)``, ``rolling(text) -> logprob``,
    ``generate(context, gen_kwargs) -> text``; each call is also recorded in ``self.calls``."""

    def __init__(
        self,
        loglikelihood: Callable[[str, str], tuple[float, bool]] | None = None,
        rolling: Callable[[str], float] | None = None,
        generate: Callable[[str, dict], str] | None = None,
    ) -> None:
        super().__init__()
        self._ll, self._rolling, self._generate = loglikelihood, rolling, generate
        self.calls: list[tuple[str, tuple]] = []

    def _answer(self, kind: str, requests, script: Callable) -> list:
        """Record each request and answer it with the test's ``script``."""
        self.calls.extend((kind, request.args) for request in requests)
        return [script(*request.args) for request in requests]

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        return self._answer("loglikelihood", requests, self._ll)

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        return self._answer("loglikelihood_rolling", requests, lambda text, *rest: self._rolling(text))

    def generate_until(self, requests, disable_tqdm: bool = False):
        return self._answer("generate_until", requests, self._generate)


def task_manager():
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(TASKS_DIR), include_defaults=False)


def evaluate(lm: ScriptedLM, tasks: list[str], num_fewshot: int | None = None, limit: int | None = None) -> dict:
    """Run lm-eval's evaluator on ``tasks`` with the scripted model; returns lm-eval's results dict."""
    from lm_eval import evaluator

    return evaluator.simple_evaluate(
        model=lm,
        tasks=tasks,
        num_fewshot=num_fewshot,
        limit=limit,
        task_manager=task_manager(),
        bootstrap_iters=0,
        random_seed=0,
        numpy_random_seed=0,
        torch_random_seed=0,
        fewshot_random_seed=0,
        log_samples=True,
    )
