"""Tests for heads/nets.py: the contract over NETS, padding invariance, chaining, learning."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from heads.training.losses import ccc_loss, cross_entropy_loss
from heads.nets import NETS, build_net, pool_frames, length_mask
from heads.training.weighting import build_weighting


D = 12
TASKS = [("high", "regression", 3), ("country", "classification", 4), ("age", "regression", 1)]
SEQUENCE_NETS = sorted(n for n, cls in NETS.items() if cls.input_kind == "sequence")
# small widths so that the suite stays fast; defaults are exercised by test_default_configs
SMALL = {"lstm": {"hidden": 16}, "mlp-mtl": {"hidden": 16}}


def _inputs(name: str, batch: int = 5, seed: int = 0) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    if NETS[name].input_kind == "vector":
        return (torch.randn(batch, D, generator=gen),)
    x = torch.randn(batch, 7, D, generator=gen)
    lengths = torch.tensor([7, 1, 4, 6, 2][:batch])
    return x, lengths


def _net(name: str, **options: object) -> torch.nn.Module:
    return build_net(name, D, TASKS, **{**SMALL.get(name, {}), **options})


def test_registry_names() -> None:
    assert set(NETS) == {
        "mlp-avb", "mlp-mtl", "lstm", "fc128", "lstm128", "netvlad", "autopool", "mean3",
        "resnet18", "resnet34", "resnet50", "cnn-exits",
    }


@pytest.mark.parametrize("name", sorted(NETS))
def test_contract_shapes_and_backward(name: str) -> None:
    torch.manual_seed(0)
    net = _net(name)
    assert net.input_kind in ("vector", "sequence")
    assert dataclasses.is_dataclass(net.config) and net.config.__dataclass_params__.frozen
    out = net(*_inputs(name))
    assert list(out) == [t[0] for t in TASKS]
    for task, kind, k in TASKS:
        assert out[task].shape == (5, k) and out[task].dtype == torch.float32
        assert torch.isfinite(out[task]).all()
        if kind == "regression" and net.config.output == "sigmoid":
            assert ((out[task] > 0) & (out[task] < 1)).all()
    sum(v.sum() for v in out.values()).backward()
    grads = [p.grad for p in net.parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    assert all(g is None or torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", sorted(NETS))
def test_default_configs_build(name: str) -> None:
    net = build_net(name, D, TASKS)
    assert net.config == NETS[name].config_type()
    out = net(*_inputs(name, batch=2))
    assert {k: v.shape[1] for k, v in out.items()} == {t: k for t, _, k in TASKS}


@pytest.mark.parametrize("name", sorted(NETS))
def test_deterministic_under_manual_seed(name: str) -> None:
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        net = _net(name)
        outs.append(net(*_inputs(name)))
    for task in outs[0]:
        assert torch.equal(outs[0][task], outs[1][task])


@pytest.mark.parametrize("name", sorted(NETS))
def test_contract_errors(name: str) -> None:
    with pytest.raises(ValueError, match="valid"):
        build_net(name, D, TASKS, no_such_option=1)
    with pytest.raises(ValueError, match="kind"):
        build_net(name, D, [("a", "ordinal", 2)])
    with pytest.raises(ValueError, match="unique"):
        build_net(name, D, [("a", "regression", 1), ("a", "regression", 2)])
    net = _net(name)
    bad = torch.randn(2, D + 1) if net.input_kind == "vector" else torch.randn(2, 3, D + 1)
    with pytest.raises(ValueError, match="x must be"):
        net(bad) if net.input_kind == "vector" else net(bad, torch.tensor([3, 3]))


def test_unknown_net_lists_the_registry() -> None:
    with pytest.raises(ValueError) as err:
        build_net("transformer", D, TASKS)
    for name in NETS:
        assert name in str(err.value)


# -- sequence heads ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", SEQUENCE_NETS)
def test_padding_invariance(name: str) -> None:
    torch.manual_seed(0)
    net = _net(name).eval()
    x, lengths = _inputs(name)
    ref = net(x, lengths)
    gen = torch.Generator().manual_seed(9)
    # garbage inside the existing padding and 5 garbage frames appended
    padded = torch.cat([x, torch.randn(5, 5, D, generator=gen) * 100], dim=1)
    pad_mask = ~length_mask(lengths, padded.shape[1])
    padded = torch.where(pad_mask[..., None], torch.randn(padded.shape, generator=gen) * 50, padded)
    padded[0, -1] = float("nan")
    got = net(padded, lengths)
    for task in ref:
        torch.testing.assert_close(got[task], ref[task], atol=1e-5, rtol=1e-5)
    # each row equals the row run alone at its true length
    for b in range(x.shape[0]):
        single = net(x[b : b + 1, : int(lengths[b])], lengths[b : b + 1])
        for task in ref:
            torch.testing.assert_close(single[task][0], ref[task][b], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", SEQUENCE_NETS)
def test_bad_lengths(name: str) -> None:
    net = _net(name)
    x = torch.randn(2, 4, D)
    with pytest.raises(ValueError, match="lengths"):
        net(x, torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="lengths"):
        net(x, torch.tensor([5, 4]))
    with pytest.raises(ValueError, match="lengths"):
        net(x, torch.tensor([4]))


def test_pool_frames_by_hand() -> None:
    y = torch.tensor([[[1.0], [5.0], [3.0]], [[2.0], [9.0], [-4.0]]])  # (2, 3, 1)
    lengths = torch.tensor([3, 1])
    mask = length_mask(lengths, 3)
    assert pool_frames(y, lengths, mask, "first").flatten().tolist() == [1.0, 2.0]
    assert pool_frames(y, lengths, mask, "last").flatten().tolist() == [3.0, 2.0]
    assert pool_frames(y, lengths, mask, "max").flatten().tolist() == [5.0, 2.0]
    assert pool_frames(y, lengths, mask, "mean").flatten().tolist() == [3.0, 2.0]


@pytest.mark.parametrize("pooling", ["first", "last", "max", "mean"])
def test_lstm_poolings(pooling: str) -> None:
    torch.manual_seed(0)
    net = build_net("lstm", D, TASKS, hidden=8, layers=2, pooling=pooling).eval()
    x, lengths = _inputs("lstm")
    ref = net(x, lengths)
    got = net(torch.cat([x, torch.randn(5, 3, D)], dim=1), lengths)
    for task in ref:
        torch.testing.assert_close(got[task], ref[task], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="pooling"):
        build_net("lstm", D, TASKS, pooling="median")


def test_autopool_alpha_zero_is_mean() -> None:
    torch.manual_seed(0)
    net = build_net("autopool", D, TASKS, hidden=8, pool="outputs")
    x, lengths = _inputs("autopool")
    out = net(x, lengths)
    mask = length_mask(lengths, x.shape[1])
    h = net.frame(x.masked_fill(~mask[..., None], 0.0))
    expected = (net.heads[1](h) * mask[..., None]).sum(1) / lengths[:, None]
    torch.testing.assert_close(out["country"], expected)
    with torch.no_grad():
        net.alphas[1].fill_(1e4)  # large alpha -> max over true frames
    expected_max = net.heads[1](h).masked_fill(~mask[..., None], float("-inf")).amax(1)
    torch.testing.assert_close(net(x, lengths)["country"], expected_max, atol=1e-4, rtol=1e-4)


# -- vector heads -----------------------------------------------------------------------------
def test_mlp_avb_layout() -> None:
    net = build_net("mlp-avb", 88, TASKS)
    layers = [type(m).__name__ for m in net.trunk if not isinstance(m, torch.nn.Dropout)]
    assert layers == ["Linear", "LayerNorm", "LeakyReLU"] * 2
    assert (net.trunk[0].in_features, net.trunk[0].out_features) == (88, 128)
    head = net.heads[1]
    assert [(m.in_features, m.out_features) for m in head if isinstance(m, torch.nn.Linear)] == [
        (64, 32), (32, 4),
    ]


@pytest.mark.parametrize("output", ["sigmoid", "clamp", "clamp-st", "linear"])
def test_mlp_mtl_output_modes(output: str) -> None:
    torch.manual_seed(0)
    net = build_net("mlp-mtl", D, TASKS, hidden=16, output=output)
    with torch.no_grad():
        net.heads[0].bias.fill_(3.0)  # push regression outputs far above 1
    x = torch.randn(6, D, requires_grad=True)
    out = net(x)["high"]
    if output == "linear":
        assert (out > 1).any()
    else:
        assert ((out >= 0) & (out <= 1)).all()
    out.sum().backward()
    bias_grad = net.heads[0].bias.grad
    if output == "clamp":
        assert (bias_grad == 0).all()  # plain clamp: no gradient outside [0, 1]
    if output == "clamp-st":
        assert (bias_grad == 6.0).all()  # straight-through: identity gradient
    with pytest.raises(ValueError, match="output"):
        build_net("mlp-mtl", D, TASKS, output="tanh")


def test_mlp_mtl_chaining_feeds_downstream_heads() -> None:
    torch.manual_seed(0)
    net = build_net("mlp-mtl", D, TASKS, hidden=16, chain=["country"])  # list, as from TOML
    assert net.config.chain == ("country",)
    assert net.heads[0].in_features == 16 + 4 and net.heads[2].in_features == 16 + 4
    assert net.heads[1].in_features == 16
    x = torch.randn(5, D)
    before = net(x)
    with torch.no_grad():
        net.heads[1].bias.add_(torch.tensor([5.0, 0.0, 0.0, 0.0]))  # change country only
    after = net(x)
    assert not torch.allclose(before["high"], after["high"])
    assert not torch.allclose(before["age"], after["age"])
    # the downstream input is [shared, softmax(country logits)]
    h = net.shared(x)
    expected = torch.sigmoid(net.heads[2](torch.cat([h, after["country"].softmax(-1)], -1)))
    torch.testing.assert_close(after["age"], expected)
    # without chaining, the country head does not touch the others
    plain = build_net("mlp-mtl", D, TASKS, hidden=16)
    b = plain(x)
    with torch.no_grad():
        plain.heads[1].bias.add_(5.0)
    torch.testing.assert_close(plain(x)["high"], b["high"])


def test_mlp_mtl_chain_detach_and_errors() -> None:
    torch.manual_seed(0)
    net = build_net("mlp-mtl", D, TASKS, hidden=16, chain=("country",), chain_detach=True)
    net(torch.randn(5, D))["high"].sum().backward()
    assert net.heads[1].weight.grad is None
    with pytest.raises(ValueError, match="chain"):
        build_net("mlp-mtl", D, TASKS, chain=("type",))


def test_mlp_mtl_with_uw_learns_a_synthetic_problem() -> None:
    """End to end: shared MLP + Kendall UW learn a 2-task problem in a few hundred steps."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 8, generator=gen)
    y_reg = torch.sigmoid(x @ torch.randn(8, 2, generator=gen))  # (256, 2) in (0, 1)
    y_cls = (x @ torch.randn(8, 3, generator=gen)).argmax(-1)  # (256,)
    tasks = [("emotion", "regression", 2), ("type", "classification", 3)]
    net = build_net("mlp-mtl", 8, tasks, hidden=32, output="sigmoid")
    weighting = build_weighting("uw", num_tasks=2)
    opt = torch.optim.Adam([*net.parameters(), *weighting.parameters()], lr=1e-2)
    for step in range(300):
        out = net(x)
        losses = torch.stack([ccc_loss(out["emotion"], y_reg), cross_entropy_loss(out["type"], y_cls)])
        opt.zero_grad()
        weighting.combine(losses, epoch=step // 100).backward()
        opt.step()
    with torch.no_grad():
        out = net(x)
        ccc = 1 - float(ccc_loss(out["emotion"], y_reg))
        accuracy = float((out["type"].argmax(-1) == y_cls).float().mean())
    assert ccc > 0.9
    assert accuracy > 0.9
    assert weighting.weights() != [0.5, 0.5]


def test_autopool_pools_features_before_the_task_layers() -> None:
    """Paper 001: the adaptive pooling "learns a set of weights before aggregating the features,
    followed by the task layers": alpha 0 is the mean of the features, a large alpha their max."""
    torch.manual_seed(0)
    net = build_net("autopool", D, TASKS)
    assert net.config.pool == "features" and net.alpha.shape == (D,)
    x, lengths = _inputs("autopool")
    mask = length_mask(lengths, x.shape[1])
    xz = x.masked_fill(~mask[..., None], 0.0)
    mean = xz.sum(1) / lengths[:, None]
    torch.testing.assert_close(net(x, lengths)["high"], net.heads[0](mean))
    with torch.no_grad():
        net.alpha.fill_(1e4)
    top = x.masked_fill(~mask[..., None], float("-inf")).amax(1)
    torch.testing.assert_close(net(x, lengths)["country"], net.heads[1](top), atol=1e-4, rtol=1e-4)


def test_fc128_averages_before_its_fc_layer() -> None:
    """Paper 001: "A single shared fully connected (FC) layer of 128 units on top of the
    averaged feature"; ``order=fc-pool`` keeps the FC-per-frame variant."""
    torch.manual_seed(0)
    x, lengths = _inputs("fc128")
    mask = length_mask(lengths, x.shape[1])
    mean = x.masked_fill(~mask[..., None], 0.0).sum(1) / lengths[:, None]
    net = build_net("fc128", D, TASKS)
    torch.testing.assert_close(net(x, lengths)["high"], net.heads[0](net.frame(mean)))
    late = build_net("fc128", D, TASKS, order="fc-pool")
    late.load_state_dict(net.state_dict())
    frames = late.frame(x.masked_fill(~mask[..., None], 0.0)) * mask[..., None]
    torch.testing.assert_close(late(x, lengths)["high"],
                               late.heads[0](frames.sum(1) / lengths[:, None]))
    with pytest.raises(ValueError, match="order"):
        build_net("fc128", D, TASKS, order="sideways")


def test_window_means_by_hand() -> None:
    from heads.nets.masking import window_means

    x = torch.tensor([[[1.0], [3.0], [5.0], [7.0], [9.0]], [[2.0], [4.0], [0.0], [0.0], [0.0]]])
    xw, lw = window_means(x, torch.tensor([5, 2]), 2)
    assert xw.squeeze(-1).tolist() == [[2.0, 6.0, 9.0], [3.0, 0.0, 0.0]] and lw.tolist() == [3, 1]


@pytest.mark.parametrize("name", ["fc128", "lstm128", "netvlad", "autopool", "mean3"])
def test_window_frames_equal_running_on_window_means(name: str) -> None:
    """``window_frames=w`` is the net run on the clip's w-frame window means (2.5 s windows in
    paper 001); padding and the lengths of the windows follow the clip's true frames."""
    from heads.nets.masking import window_means

    torch.manual_seed(0)
    net = _net(name, window_frames=3).eval()
    plain = _net(name).eval()
    plain.load_state_dict(net.state_dict())
    x, lengths = _inputs(name)
    mask = length_mask(lengths, x.shape[1])
    xw, lw = window_means(x.masked_fill(~mask[..., None], 0.0), lengths, 3)
    got, ref = net(x, lengths), plain(xw, lw)
    for task in ref:
        torch.testing.assert_close(got[task], ref[task], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="window_frames"):
        _net(name, window_frames=-1)(x, lengths)
