"""The memory layer: exact gradients of the loss and of w_1, local and remote backends alike."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from raremem.models.memory_layer import MemoryLayer, make_backend
from tests.reference_memory import ReferenceMemory
from tests.workloads import clustered_batches

D, SIZE, K = 16, 96, 12


def reference_step(ref, layer, x, labels):
    """The loss by autograd, from the reference memory's positive and negative keys."""
    x = x.clone().requires_grad_(True)
    q = torch.nn.functional.normalize(layer.query_proj(x), dim=-1)
    outs = ref.call([{"queries": q.detach().numpy(), "labels": labels.numpy(), "update": True,
                      "use_recent": True}])[0]
    k_pos = torch.from_numpy(np.stack([o["pos_key"] for o in outs]))  # zeros where none
    k_neg = torch.from_numpy(np.stack([o["neg_key"] for o in outs]))
    loss = torch.relu((q * k_neg).sum(-1) - (q * k_pos).sum(-1) + ref.alpha)
    return x, loss, outs


@pytest.fixture(params=["local", "remote"])
def backend(request, server):
    spec = "local" if request.param == "local" else server[0]
    return make_backend(spec, f"layer-{request.param}", D, SIZE, choose_k=K, age_noise=0.0)


def test_loss_gradient_equals_reference_autograd(backend):
    torch.manual_seed(0)
    layer = MemoryLayer(D, backend)
    ref = ReferenceMemory(SIZE, D, K, age_noise=0.0)
    for step, req in enumerate(clustered_batches(3, D, 150, 8, 60)):
        x_in = torch.from_numpy(req["queries"])
        labels = torch.from_numpy(req["labels"])
        x_ref, loss_ref, outs = reference_step(ref, layer, x_in, labels)
        grad_ref, = torch.autograd.grad(loss_ref.sum(), x_ref)
        x = x_in.clone().requires_grad_(True)
        out = layer(x, labels)
        torch.testing.assert_close(out.loss, loss_ref.detach(), atol=1e-5, rtol=0)
        grad, = torch.autograd.grad(out.loss.sum(), x)
        torch.testing.assert_close(grad, grad_ref, atol=1e-5, rtol=1e-4)
        assert out.result.tolist() == [o["result"] for o in outs]
        assert out.correct.tolist() == [o["correct"] for o in outs]


def test_weight_gradient_equals_autograd_over_all_neighbour_keys(backend):
    """d w_1/dx from two vectors (top key, mean key) equals autograd over all k keys."""
    torch.manual_seed(1)
    layer = MemoryLayer(D, backend)
    for req in clustered_batches(5, D, 40, 8, 20):  # fill the memory
        layer(torch.from_numpy(req["queries"]), torch.from_numpy(req["labels"]))
    x = torch.randn(6, D, requires_grad=True)
    out = layer(x, update=False, weight_grad=True)
    grad, = torch.autograd.grad(out.weight.sum(), x)

    x2 = x.detach().clone().requires_grad_(True)
    q = torch.nn.functional.normalize(layer.query_proj(x2), dim=-1)
    full = backend.lookup(q.detach().numpy(), return_neighbors=True, return_neighbor_keys=True)
    keys = torch.tensor(full.neighbors.keys)                          # (B, k, d)
    w = torch.softmax(backend.inverse_temperature * torch.einsum("bd,bkd->bk", q, keys), dim=1)
    grad_ref, = torch.autograd.grad(w[:, 0].sum(), x2)
    torch.testing.assert_close(out.weight.detach(), w[:, 0].detach(), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(grad, grad_ref, atol=1e-5, rtol=1e-3)


def test_local_and_remote_backends_agree(server):
    torch.manual_seed(2)
    layers = []
    for spec in ("local", server[0]):
        torch.manual_seed(2)
        layers.append(MemoryLayer(D, make_backend(spec, "agree", D, SIZE, choose_k=K, age_noise=8.0, seed=4)))
    for req in clustered_batches(6, D, 200, 8, 50):
        x, labels = torch.from_numpy(req["queries"]), torch.from_numpy(req["labels"])
        a, b = (layer(x, labels) for layer in layers)
        assert torch.equal(a.result, b.result)
        torch.testing.assert_close(a.loss, b.loss)
        np.testing.assert_array_equal(a.raw.written_slot, b.raw.written_slot)


def test_no_labels_means_no_update(backend):
    layer = MemoryLayer(D, backend)
    out = layer(torch.randn(4, D))
    assert (out.result == -1).all() and out.correct is None and float(out.loss.sum()) == 0.0
    assert backend.lookup(np.eye(D, dtype=np.float32)[:1]).found[0] == 0
