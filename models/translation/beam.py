"""Beam search over ``AttentionSeq2Seq.step``: all beams of a batch advance together, so a
model with memory makes one memory call per step for all B x width rows."""

from __future__ import annotations

import torch


def _select(ctx: dict, rows: torch.Tensor) -> None:
    """Keep decoder state rows ``rows`` (N,) (the beams that survived, in their new order)."""
    if ctx["state"] is not None:
        ctx["state"] = tuple(s[:, rows] for s in ctx["state"])   # LSTM (h, c): (layers, N, U)


@torch.no_grad()
def beam_search(model, src: torch.Tensor, width: int = 4, max_len: int | None = None,
                length_penalty: float = 0.6) -> list[list[int]]:
    """src (B, S) -> for each row the best hypothesis' token ids (EOS and after removed).

    Scores are summed log-probabilities; finished beams carry on with PAD at no cost. The final
    choice divides by GNMT's length penalty ((5 + len) / 6) ** length_penalty."""
    cfg = model.cfg
    B, S = src.shape
    W, N = width, B * width
    max_len = max_len or 2 * S + 10
    ctx = model.start(src.repeat_interleave(W, 0))                        # every source row W times
    dev = src.device
    scores = torch.full((B, W), float("-inf"), device=dev)
    scores[:, 0] = 0.0                                                    # one live beam to start
    tokens = torch.empty((N, 0), dtype=torch.long, device=dev)
    finished = torch.zeros(N, dtype=torch.bool, device=dev)
    prev = torch.full((N, 1), model.go, dtype=torch.long, device=dev)
    for _ in range(max_len):
        logits, _ = model.step(prev, ctx, ~finished)
        logp = logits[:, 0].float().log_softmax(-1)                        # (N, V)
        logp[:, cfg.pad] = float("-inf")
        logp[finished] = float("-inf")
        logp[finished, cfg.pad] = 0.0
        V = logp.shape[1]
        top, idx = (scores.reshape(N, 1) + logp).reshape(B, W * V).topk(W, -1)   # (B, W)
        rows = (torch.arange(B, device=dev)[:, None] * W + idx // V).reshape(N)
        token = (idx % V).reshape(N)
        _select(ctx, rows)
        tokens = torch.cat([tokens[rows], token[:, None]], 1)
        finished = finished[rows] | (token == cfg.eos)
        scores, prev = top, token[:, None]
        if finished.all():
            break
    lengths = ((tokens != cfg.pad) & (tokens != cfg.eos)).sum(1) + 1       # counting the EOS
    normed = scores.reshape(N) / ((5.0 + lengths) / 6.0) ** length_penalty
    best = (torch.arange(B, device=dev) * W + normed.reshape(B, W).argmax(-1)).tolist()
    out = []
    for row in tokens[best].tolist():
        row = row[:row.index(cfg.eos)] if cfg.eos in row else row
        out.append([t for t in row if t != cfg.pad])
    return out
