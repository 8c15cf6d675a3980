"""Experiments built from the pipeline's stages, each writing its own tables:

    stage_ablation.py     ``snnbench ablate``: a grid over stages, bits and float-kept operators
    braingpt_ablation.py  ``snnbench braingpt-ablate``: BrainGPT's architecture ablations and its figure 2
    neurtransformer.py    ``snnbench neurtransformer``: GPT-2 with spike-based self-attention, fine-tuned (its table:
                          neurtransformer_table.py)
    reproduce.py          ``snnbench reproduce``: the seed papers' tables beside ours
    demo.py               ``snnbench demo``: the end-to-end plan of commands
"""
