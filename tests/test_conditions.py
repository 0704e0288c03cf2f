"""Conditions of any structure: passing to the backbone, dropping, selecting, concatenating."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from soflow_toolkit import (
    SolutionFlowWrapper,
    concat_conditions,
    drop_condition,
    flow_matching_loss,
    sample,
    select_condition,
    solution_consistency_loss,
)


class _CondNet(nn.Module):
    """Accepts labels (B,), embeddings (B, E), a list of B strings, or keyword tensors; records them."""

    def __init__(self, num_classes: int = 4, embed_dim: int = 5) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.table = nn.Parameter(torch.randn(num_classes + 1, 3, generator=g, dtype=torch.float64))
        self.proj = nn.Parameter(torch.randn(embed_dim, 3, generator=g, dtype=torch.float64))
        self.bias = nn.Parameter(torch.randn(3, generator=g, dtype=torch.float64))
        self.seen: list = []

    def forward(self, x, t, s, cond=None, *, emb=None, label=None):
        self.seen.append({"cond": cond, "emb": emb, "label": label})
        shift = torch.zeros_like(x) + self.bias
        if isinstance(cond, torch.Tensor):
            shift = shift + (self.table[cond] if cond.ndim == 1 else cond @ self.proj)
        elif isinstance(cond, list):
            shift = shift + torch.tensor([[len(word), 0.0, 0.0] for word in cond], dtype=x.dtype)
        if emb is not None:
            shift = shift + emb @ self.proj
        if label is not None:
            shift = shift + self.table[label]
        return x * (t - s)[:, None] + shift


def _batch(n=4):
    g = torch.Generator().manual_seed(1)
    return (
        torch.randn(n, 3, generator=g, dtype=torch.float64),
        torch.randn(n, 3, generator=g, dtype=torch.float64),
    )


@pytest.mark.parametrize(
    "cond",
    [
        None,
        torch.tensor([0, 3, 1, 2]),
        torch.randn(4, 5, dtype=torch.float64),
        ["a", "bb", "ccc", "dddd"],
    ],
    ids=["none", "labels", "embeddings", "list"],
)
def test_condition_is_passed_positionally(cond) -> None:
    net = _CondNet()
    model = SolutionFlowWrapper(net)
    data, noise = _batch()
    model(data, 0.5, 0.1, cond)
    assert net.seen[-1]["cond"] is cond
    out = flow_matching_loss(model, data, noise, 0.5, cond=cond)
    assert torch.isfinite(out.loss)
    assert net.seen[-1]["cond"] is cond
    solution_consistency_loss(model, data, noise, 0.9, 0.8, 0.1, cond=cond).loss.backward()
    sample(model, noise, steps=2, cond=cond)


def test_condition_changes_the_output() -> None:
    model = SolutionFlowWrapper(_CondNet())
    data, _ = _batch()
    a = model(data, 0.5, 0.1, torch.tensor([0, 0, 0, 0]))
    b = model(data, 0.5, 0.1, torch.tensor([1, 1, 1, 1]))
    assert not torch.allclose(a, b)


def test_dict_condition_is_passed_as_keywords() -> None:
    net = _CondNet()
    model = SolutionFlowWrapper(net)
    data, noise = _batch()
    cond = {"emb": torch.randn(4, 5, dtype=torch.float64), "label": torch.tensor([1, 2, 3, 0])}
    model(data, 0.5, 0.1, cond)
    seen = net.seen[-1]
    assert seen["cond"] is None
    assert seen["emb"] is cond["emb"]
    assert seen["label"] is cond["label"]
    out = solution_consistency_loss(model, data, noise, 0.9, 0.8, 0.1, cond=cond)
    out.loss.backward()
    assert net.proj.grad is not None


# --- drop_condition --------------------------------------------------------------------------------

MASK = torch.tensor([True, False, True, False])


def test_drop_labels_with_int_null() -> None:
    labels = torch.tensor([3, 1, 2, 0])
    dropped = drop_condition(labels, MASK, 10)
    assert torch.equal(dropped, torch.tensor([10, 1, 10, 0]))
    assert dropped.dtype == labels.dtype
    assert torch.equal(labels, torch.tensor([3, 1, 2, 0]))  # not modified in place


@pytest.mark.parametrize("null_shape", [(5,), (1, 5), (4, 5)])
def test_drop_embeddings_with_tensor_null(null_shape) -> None:
    emb = torch.randn(4, 5, dtype=torch.float64)
    null = torch.arange(float(torch.Size(null_shape).numel()), dtype=torch.float64).reshape(null_shape)
    dropped = drop_condition(emb, MASK, null)
    expected_null = null.expand(4, 5)
    torch.testing.assert_close(dropped[MASK], expected_null[MASK])
    torch.testing.assert_close(dropped[~MASK], emb[~MASK])


def test_drop_token_states_with_one_sample_null() -> None:
    tokens = torch.randn(4, 7, 5)
    null = torch.zeros(7, 5)
    dropped = drop_condition(tokens, MASK, null)
    assert torch.equal(dropped[0], null)
    assert torch.equal(dropped[1], tokens[1])


def test_learnable_null_receives_gradient() -> None:
    emb = torch.randn(4, 5, dtype=torch.float64)
    null = nn.Parameter(torch.zeros(5, dtype=torch.float64))
    drop_condition(emb, MASK, null).sum().backward()
    # Each dropped row contributes 1 to every element of the null's gradient.
    torch.testing.assert_close(null.grad, torch.full((5,), 2.0, dtype=torch.float64))


def test_learnable_null_trains_through_the_loss() -> None:
    net = _CondNet()
    model = SolutionFlowWrapper(net)
    data, noise = _batch()
    emb = torch.randn(4, 5, dtype=torch.float64)
    null = nn.Parameter(torch.zeros(5, dtype=torch.float64))
    out = flow_matching_loss(model, data, noise, 0.5, cond=emb, drop_mask=MASK, null_cond=null)
    out.loss.backward()
    assert null.grad is not None
    assert float(null.grad.abs().sum()) > 0
    # Without dropped samples the null is unused.
    null.grad = None
    keep_all = torch.zeros(4, dtype=torch.bool)
    flow_matching_loss(model, data, noise, 0.5, cond=emb, drop_mask=keep_all, null_cond=null).loss.backward()
    assert null.grad is None or float(null.grad.abs().sum()) == 0


def test_drop_dict_replaces_only_the_given_keys() -> None:
    cond = {
        "label": torch.tensor([1, 2, 3, 0]),
        "emb": torch.randn(4, 5),
        "inner": {"ids": torch.tensor([5, 6, 7, 8]), "keep": torch.ones(4)},
    }
    dropped = drop_condition(cond, MASK, {"label": 9, "inner": {"ids": 0}})
    assert torch.equal(dropped["label"], torch.tensor([9, 2, 9, 0]))
    assert dropped["emb"] is cond["emb"]
    assert torch.equal(dropped["inner"]["ids"], torch.tensor([0, 6, 0, 8]))
    assert dropped["inner"]["keep"] is cond["inner"]["keep"]


def test_drop_list_and_tuple() -> None:
    words = ["a", "b", "c", "d"]
    assert drop_condition(words, MASK, "") == ["", "b", "", "d"]
    assert drop_condition(tuple(words), MASK, "<null>") == ("<null>", "b", "<null>", "d")


def test_dropped_list_condition_in_loss() -> None:
    net = _CondNet()
    model = SolutionFlowWrapper(net)
    data, noise = _batch()
    flow_matching_loss(model, data, noise, 0.5, cond=["aa", "b", "ccc", "d"], drop_mask=MASK, null_cond="")
    assert net.seen[-1]["cond"] == ["", "b", "", "d"]


# --- select / concat -------------------------------------------------------------------------------


def test_select_and_concat_round_trip() -> None:
    cond = {"label": torch.tensor([1, 2, 3, 0]), "words": ["a", "b", "c", "d"], "nested": {"e": torch.eye(4)}}
    head = select_condition(cond, slice(0, 1))
    tail = select_condition(cond, torch.tensor([1, 2, 3]))
    assert head["words"] == ["a"]
    assert tail["words"] == ["b", "c", "d"]
    joined = concat_conditions([head, tail])
    assert torch.equal(joined["label"], cond["label"])
    assert joined["words"] == cond["words"]
    assert torch.equal(joined["nested"]["e"], cond["nested"]["e"])
    assert select_condition(None, slice(0, 2)) is None
    assert concat_conditions([None, None]) is None
    assert select_condition(("x", "y", "z"), torch.tensor([2, 0])) == ("z", "x")
