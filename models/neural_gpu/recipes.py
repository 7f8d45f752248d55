"""The query recipes of Table 2's memory rows, by name: ``train --recipe NAME``.

The paper's models query the memory the authors' way (``paper``). On this task the learned
queries lose the number they must name before the memory holds it (the probe,
results/synthetic_notes.md); each other recipe is one response to that, kept because a row of
results/synthetic.md measured it. A recipe is a set of the trainer's query settings; the model
code reads those settings (model.py, models/seq2seq.py), and a row names its recipe.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Recipe:
    why: str                 # the reason it exists
    measured: str            # the row (results/synthetic.md) that measured it
    archs: tuple[str, ...]   # the architectures it applies to
    settings: dict = field(default_factory=dict)   # TrainConfig fields it sets (the rest: defaults)


TOWER_HELD = {"query_from": "tower", "query_warmup": 1500, "leave_one_out": True}

RECIPES = {
    "paper": Recipe("the authors' queries: the Neural GPU's state one column ahead, seq2seq's attention vector a_t",
                    "Extended Neural GPU + memory; seq2seq + attention + memory", ("ngpu", "seq2seq")),
    "fixed-queries": Recipe("a ceiling for the memory-and-tape path: a fixed vector per (number, digit) as the "
                            "query, so only the path is tested, not the queries",
                            "control: Neural GPU + memory, fixed (number, digit) queries", ("ngpu",),
                            {"fixed_queries": True}),
    "no-weight-grad": Recipe("does the decoder's loss through w_1 flatten the queries? (it did not)",
                             "the probe: Neural GPU + memory, w_1 without decoder gradient", ("ngpu",),
                             {"weight_grad": False}),
    "no-query-grad": Recipe("which loss takes the number out of the state: the memory's losses reach only the "
                            "query projection", "the probe: queries without gradient into the network", ("ngpu",),
                            {"query_grad": False}),
    "encoder": Recipe("queries from the encoder's last state, which the decoder's steps do not touch",
                      "the probe: queries from the encoder", ("ngpu",), {"query_from": "encoder"}),
    "tower": Recipe("queries from a key tower of their own that only the memory's losses train",
                    "the probe: queries from a key tower", ("ngpu", "seq2seq"), {"query_from": "tower"}),
    "tower-held": Recipe("the tower held still 1,500 steps while the memory fills, and no lookup finds its own "
                         "example's earlier copy (leave-one-out)",
                         "the probe: a key tower held still for 1,500 steps, leave-one-out", ("ngpu",), TOWER_HELD),
    "tower-uniform": Recipe("the held tower with a uniformity term that makes queries that all look alike costly: "
                            "the recipe whose rows learn", "Neural GPU + memory and seq2seq + memory, key tower "
                            "held 1,500 steps, leave-one-out, uniformity term 0.1", ("ngpu", "seq2seq"),
                            {**TOWER_HELD, "query_uniformity": 0.1}),
}
# The settings a recipe may set: the trainer refuses them as flags beside --recipe.
SETTINGS = ("fixed_queries", "weight_grad", "query_grad", "query_from", "query_warmup", "query_uniformity",
            "leave_one_out")


def recipe_named(name: str, arch: str) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"--recipe is one of {', '.join(RECIPES)}, not {name!r}")
    recipe = RECIPES[name]
    if arch not in recipe.archs:
        raise ValueError(f"--recipe {name} is for --arch {' or '.join(recipe.archs)}")
    return recipe
