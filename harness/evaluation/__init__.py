"""``snnbench eval`` as one pipeline that goes down into the models once and comes back once:

    plan.py       every flag and input checked before any work (``plan_eval`` -> ``EvalPlan``)
    identity.py   a run is its settings: model identity, settings hash, run ids, the guarded run folder
    runner.py     load -> convert to each mode (``models.convert.in_mode``) -> the adapter wraps the ready
                  model -> lm-eval per task -> accounting -> cost.json -> tables
    adapter.py    the lm-eval adapter (``SNNBenchLM``): scores and generates with a ready model, never converts
    accounting.py time, measured energy and counted operations of every forward, attributed to tasks
    costs.py      a task's cost as the JSON record of cost.json
    tables.py     metrics.csv, cost.csv and energy.csv of a run folder
    suites.py     named suites of lm-eval tasks
    options.py    what ``snnbench eval`` is asked for (one field per flag)
"""
