"""Experiments built from the pipeline's stages, each writing its own tables:

    stage_ablation.py     ``snnbench ablate``: a grid over stages, bits and float-kept operators
    braingpt_ablation.py  ``snnbench braingpt-ablate``: BrainGPT's architecture ablations and its figure 2
    reproduce.py          ``snnbench reproduce``: the seed papers' tables beside ours
    demo.py               ``snnbench demo``: the end-to-end plan of commands
"""
