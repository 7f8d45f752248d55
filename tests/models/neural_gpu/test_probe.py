"""The query probe: it must see the number in a fresh Neural GPU's queries, and nothing in queries
that are all one vector."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from raremem.models.neural_gpu.probe import load_model, placed, probe, record_queries
from raremem.models.neural_gpu.task import DIGITS, random_function

F = random_function(0)


def test_fresh_neural_gpu_queries_name_the_middle_digits_number():
    result = probe(load_model(None, "ngpu"), F, numbers=200)
    assert result["chance"] == pytest.approx(1 / 200)
    # With the authors' initialisation, measured at 200 numbers: recall 0.34-0.85 over the 7
    # digits (0.85 in the middle), mean cosine between numbers 0.09-0.56.
    assert result["recall_other_context"][3] > 0.5
    assert min(result["recall_other_context"]) > 0.2
    assert all(s < 0.7 for s in result["spread"])


def test_queries_that_are_one_vector_give_chance_recall():
    model = load_model(None, "ngpu")
    model.memory.query_proj.register_forward_hook(lambda _m, _i, out: torch.ones_like(out))
    result = probe(model, F, numbers=200)
    assert min(result["spread"]) == pytest.approx(1.0)
    assert max(result["recall_other_context"] + result["recall_other_start"]) <= 0.02


@pytest.mark.parametrize("arch", ["ngpu", "seq2seq"])
def test_recorded_queries_are_unit_vectors_at_every_digit(arch):
    model = load_model(None, arch)
    numbers = np.arange(2, 12)
    q = record_queries(model, *placed(numbers, F, 5, 16, seed=0))
    assert q.shape == (10, 16, model.memory.query_proj.out_features)
    run = q[:, 5:5 + DIGITS]
    assert np.allclose(np.linalg.norm(run, axis=-1), 1, atol=1e-5)
