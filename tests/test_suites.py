"""Named suites: per-task document limits, generation caps and context windows, and how flags override them."""

import pytest

from harness.evaluation.suites import SUITES, SuiteTask, parse_task, resolve_suite


def test_a_suite_tasks_own_settings_and_the_flags_that_override_them():
    task = SuiteTask("snnbench_gsm8k_cot", 8, limit=16, max_gen_toks=96, max_length=512)
    assert task.limit_under(None) == 16 and task.limit_under(4) == 4 and task.limit_under(100) == 16  # --limit only lowers
    assert SuiteTask("t", 0).limit_under(None) is None and SuiteTask("t", 0).limit_under(3) == 3
    assert task.generation(None) == {"max_gen_toks": 96} and task.generation(32) == {"max_gen_toks": 32}  # --max-gen-toks wins
    assert SuiteTask("t", 0).generation(None) is None
    assert task.context_window(None) == 512 and task.context_window(2048) == 2048


@pytest.mark.parametrize("item, expected", [
    ("snnbench_arc_easy", SuiteTask("snnbench_arc_easy", None)),
    ("snnbench_arc_easy:0", SuiteTask("snnbench_arc_easy", 0)),
    ("snnbench_arc_easy:0:500", SuiteTask("snnbench_arc_easy", 0, 500)),
    ("snnbench_arc_easy::500", SuiteTask("snnbench_arc_easy", None, 500)),
])
def test_task_names_carry_shots_and_a_limit(item, expected):
    assert parse_task(item) == expected


@pytest.mark.parametrize("item", ["t:x", "t:0:y", "t:0:0", "t:1:2:3"])
def test_malformed_task_names_are_one_line_errors(item):
    with pytest.raises(ValueError, match="task") as err:
        parse_task(item)
    assert "\n" not in str(err.value)


def test_the_fidelity_and_demo_suites_are_sized():
    fidelity = {t.task: t for t in resolve_suite("fidelity", None)}
    assert fidelity["snnbench_arc_easy"].limit == 1000 and fidelity["snnbench_mmlu"].limit == 8
    assert fidelity["snnbench_ppl_ptb"].max_length == 512 and fidelity["snnbench_bbh"].max_gen_toks == 96
    demo = {t.task: t for t in SUITES["demo"].tasks}
    assert demo["snnbench_arc_easy"].limit == 500 and demo["snnbench_arc_easy"].num_fewshot == 0
