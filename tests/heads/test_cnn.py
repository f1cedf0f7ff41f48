"""Tests for heads/nets/cnn.py: the spectrogram CNNs (ResNet18/34, multi-exit CNN), their masking,
training crops, window evaluation, exits, recipes, and a small end-to-end training run."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from heads.nets.cnn import (CROP_FRAMES, EXVO_EXITS, MaskedBatchNorm2d, int_tuple, parse_exits,
                       random_crop, split_windows)
from heads.nets import NETS, build_net, length_mask

D = 16
EXVO = [("emotion", "regression", 10), ("country", "classification", 4), ("age", "regression", 1)]
CNNS = ("resnet18", "resnet34", "resnet50", "cnn-exits")
# tiny widths: the defaults are built (not trained) by the recipe test below
SMALL = {"resnet18": {"width": 4}, "resnet34": {"width": 4}, "resnet50": {"width": 4}, "cnn-exits": {"channels": (4, 4, 8, 8, 8)}}


def _net(name: str, tasks=EXVO, **options: object) -> torch.nn.Module:
    return build_net(name, D, tasks, **{**SMALL[name], **options})


def _batch(lengths=(37, 1, 20, 9, 64), seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    lengths_t = torch.tensor(lengths)
    x = torch.randn(len(lengths), int(lengths_t.max()), D, generator=gen)
    return x.masked_fill(~length_mask(lengths_t, x.shape[1])[..., None], 0.0), lengths_t


# -- registry, shapes, layout -----------------------------------------------------------------
@pytest.mark.parametrize("name", CNNS)
def test_registered_sequence_nets_with_task_shapes(name: str) -> None:
    assert NETS[name].input_kind == "sequence"
    torch.manual_seed(0)
    net = _net(name)
    x, lengths = _batch()
    out = net(x, lengths)
    assert list(out) == ["emotion", "country", "age"]
    assert [tuple(v.shape) for v in out.values()] == [(5, 10), (5, 4), (5, 1)]
    assert all(torch.isfinite(v).all() for v in out.values())


def test_resnet_layouts() -> None:
    from heads.nets.cnn import BasicBlock

    r18, r34 = build_net("resnet18", 128, EXVO), build_net("resnet34", 128, EXVO)
    assert r18.stem.conv.in_channels == 1 and r18.stem.conv.kernel_size == (7, 7)
    assert [sum(isinstance(m, BasicBlock) for m in n.modules()) for n in (r18, r34)] == [8, 16]
    assert [b.conv2.out_channels for b in r18.blocks] == [64, 64, 128, 128, 256, 256, 512, 512]
    assert [b.stride for b in r34.blocks].count(2) == 3
    # parameter counts of the torchvision-style trunks (conv + BN, no fc), 1 input channel
    trunk = lambda n: sum(p.numel() for m in (n.stem, n.blocks) for p in m.parameters())  # noqa: E731
    assert trunk(r18) == 11_170_240 and trunk(r34) == 21_278_400
    assert r18.heads[1][0].in_features == 512 and r18.heads[1][-1].out_features == 4
    assert build_net("resnet18", 64, EXVO, layers="1,1", width=8).blocks[-1].conv2.out_channels == 16


def test_resnet50_is_the_bottleneck_layout() -> None:
    from heads.nets.cnn import Bottleneck

    r50 = build_net("resnet50", 128, EXVO)
    assert sum(isinstance(m, Bottleneck) for m in r50.modules()) == 16
    firsts = [r50.blocks[i] for i in (0, 3, 7, 13)]  # first block of each stage (3, 4, 6, 3)
    assert [b.conv3.out_channels for b in firsts] == [256, 512, 1024, 2048]
    assert [b.conv2.stride for b in r50.blocks].count((2, 2)) == 3
    # torchvision's resnet50 trunk (conv + BN, no fc) has 23,508,032 parameters with 3 input
    # channels; one input channel removes 7 * 7 * 64 * 2 = 6,272 stem weights
    trunk = sum(p.numel() for m in (r50.stem, r50.blocks) for p in m.parameters())
    assert trunk == 23_508_032 - 6_272
    assert r50.heads[0][0].in_features == 2048


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match="evaluate"):
        build_net("cnn-exits", D, EXVO, evaluate="median")
    with pytest.raises(ValueError, match="windows.*crop_frames"):
        build_net("resnet18", D, EXVO, evaluate="windows", crop_frames=0)
    with pytest.raises(ValueError, match="crop_frames"):
        build_net("resnet18", D, EXVO, crop_frames=-1)
    with pytest.raises(ValueError, match="channels"):
        build_net("cnn-exits", D, EXVO, channels=())
    with pytest.raises(ValueError, match="layers"):
        build_net("resnet18", D, EXVO, layers="2,x")
    assert int_tuple([2, 3], "layers") == (2, 3) and int_tuple(7, "width") == (7,)


# -- exits ------------------------------------------------------------------------------------
def test_exit_mapping_defaults_and_spec() -> None:
    assert parse_exits("auto", ["emotion", "country", "age"], 5) == EXVO_EXITS
    assert parse_exits("auto", ["high", "country"], 5) == {"high": 5, "country": 5}
    assert parse_exits("auto", ["country"], 5) == {"country": 5}  # single task: full depth
    assert parse_exits("last", ["emotion", "country", "age"], 5) == dict.fromkeys(EXVO_EXITS, 5)
    assert parse_exits("auto", ["emotion", "country", "age"], 2) == {"age": 1, "country": 2, "emotion": 2}
    assert parse_exits("age=2, country:4", ["emotion", "country", "age"], 5) == {
        "emotion": 5, "country": 4, "age": 2}
    assert parse_exits({"emotion": 1}, ["emotion", "age"], 3) == {"emotion": 1, "age": 3}
    with pytest.raises(ValueError, match="not an output.*emotion"):
        parse_exits("type=1", ["emotion", "age"], 5)
    with pytest.raises(ValueError, match=r"\[1, 5\]"):
        parse_exits("age=6", ["emotion", "age"], 5)
    with pytest.raises(ValueError, match="NAME=BLOCK"):
        parse_exits("age", ["emotion", "age"], 5)
    net = build_net("cnn-exits", D, EXVO, channels=(3, 5, 6, 7, 9))
    assert net.exit_of == {"emotion": 5, "country": 3, "age": 1}
    assert [h[0].in_features for h in net.heads] == [9, 6, 3]  # each exit reads its block


def test_a_task_loss_trains_only_the_blocks_up_to_its_exit() -> None:
    torch.manual_seed(0)
    net = _net("cnn-exits")
    x, lengths = _batch()
    for task, exit_block in (("age", 1), ("country", 3), ("emotion", 5)):
        net.zero_grad(set_to_none=True)
        net(x, lengths)[task].sum().backward()
        for b, block in enumerate(net.blocks, start=1):
            grads = [p.grad for p in block.parameters()]
            if b <= exit_block:
                assert all(g is not None and g.abs().sum() > 0 for g in grads), (task, b)
            else:
                assert all(g is None for g in grads), (task, b)
        heads_used = [p.grad is not None for h in net.heads for p in h.parameters()]
        assert sum(heads_used) == len(list(net.heads[[t[0] for t in EXVO].index(task)].parameters()))
    # every exit early: the later blocks are not even run
    net = _net("cnn-exits", exits="emotion=2,country=2,age=1")
    net(x, lengths)["emotion"].sum().backward()
    assert all(p.grad is None for block in net.blocks[2:] for p in block.parameters())


# -- masking ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", CNNS)
@pytest.mark.parametrize("evaluate", ["clip", "windows"])
def test_padding_never_changes_a_clips_output(name: str, evaluate: str) -> None:
    torch.manual_seed(0)
    net = _net(name, evaluate=evaluate, crop_frames=16).eval()
    with torch.no_grad():  # non-trivial running statistics, so that padding would show
        for m in net.modules():
            if isinstance(m, MaskedBatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    x, lengths = _batch()
    ref = net(x, lengths)
    garbage = torch.randn(5, 11, D) * 100
    padded = torch.cat([x, garbage], dim=1)
    pad = ~length_mask(lengths, padded.shape[1])
    padded = torch.where(pad[..., None], torch.randn(padded.shape) * 50, padded)
    padded[1, -1] = float("nan")
    got = net(padded, lengths)
    for task in ref:
        torch.testing.assert_close(got[task], ref[task], atol=1e-5, rtol=1e-4)
    for b in range(len(lengths)):  # each clip alone, at its true length
        single = net(x[b:b + 1, :int(lengths[b])], lengths[b:b + 1])
        for task in ref:
            torch.testing.assert_close(single[task][0], ref[task][b], atol=1e-5, rtol=1e-4)
    # ... and the last true frame of every clip does count (no frame is lost to a stride)
    for b, n in enumerate(lengths.tolist()):
        changed = x.clone()
        changed[b, n - 1] += torch.linspace(-5.0, 5.0, D)
        new = net(changed, lengths)
        assert any(not torch.allclose(new[t][b], ref[t][b]) for t in ref), (b, n)


def test_true_lengths_follow_every_strided_layer() -> None:
    """An unpadded clip keeps every output frame of every strided layer: the true length after
    a stride is exactly the layer's frame count (ceil(T / 2)), so no true frame is masked."""
    import torch.nn.functional as F

    from heads.nets.cnn import BasicBlock, ConvUnit, halve, max_pool_halve

    units = [ConvUnit(1, 2, kernel=7, stride=2), ConvUnit(1, 2, kernel=3, stride=2)]
    block = BasicBlock(1, 2, stride=2)
    for t in range(1, 40):
        x = torch.rand(1, 1, 5, t)
        n = torch.tensor([t])
        frames = {u(x, n)[0].shape[3] for u in units} | {block(x, n)[0].shape[3]}
        frames |= {max_pool_halve(x, n)[0].shape[3], F.max_pool2d(x, 3, stride=2, padding=1).shape[3]}
        assert frames == {int(halve(n))} == {(t + 1) // 2}, t


@pytest.mark.parametrize("name", ["resnet18", "cnn-exits"])
def test_training_statistics_ignore_padding(name: str) -> None:
    """Train mode (whole clips, no dropout): extra padding changes neither outputs nor the
    running statistics; without the masking the statistics would count the padded cells."""
    nets = []
    for _ in range(2):
        torch.manual_seed(0)
        nets.append(_net(name, crop_frames=0, dropout=0.0).train())
    x, lengths = _batch()
    a = nets[0](x, lengths)
    b = nets[1](torch.cat([x, torch.randn(5, 20, D) * 30], dim=1), lengths)
    for task in a:
        torch.testing.assert_close(a[task], b[task], atol=1e-5, rtol=1e-4)
    for ma, mb in zip(nets[0].modules(), nets[1].modules()):
        if isinstance(ma, MaskedBatchNorm2d):
            torch.testing.assert_close(ma.running_mean, mb.running_mean)
            torch.testing.assert_close(ma.running_var, mb.running_var)


def test_masked_batch_norm_equals_torch_batch_norm_on_the_true_cells() -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 4, 5, 9) * 3 + 1  # (B, C, F, T)
    lengths = torch.tensor([9, 2, 5])
    mask = length_mask(lengths, 9).float()[:, None, None, :]
    ours, ref = MaskedBatchNorm2d(4), torch.nn.BatchNorm2d(4)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 2)
        ours.bias.uniform_(-1, 1)
    ref.load_state_dict(ours.state_dict())
    y = ours(x, mask)
    # torch's batch norm on the true cells only: each clip's true frames side by side in time
    true = torch.cat([x[b:b + 1, :, :, :int(lengths[b])] for b in range(3)], dim=3)
    y_ref = ref(true)
    torch.testing.assert_close(torch.cat([y[b:b + 1, :, :, :int(lengths[b])] for b in range(3)], dim=3),
                               y_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.running_mean, ref.running_mean)
    torch.testing.assert_close(ours.running_var, ref.running_var)
    ours.eval(), ref.eval()
    torch.testing.assert_close(ours(true, torch.ones(1, 1, 1, true.shape[3])), ref(true))


# -- crops and windows ------------------------------------------------------------------------
def test_random_crop_respects_lengths_and_is_seeded() -> None:
    lengths = torch.tensor([300, 104, 50, 1])
    x = torch.arange(1, 301, dtype=torch.float32)[None, :, None].repeat(4, 1, 2)  # frame number
    x = x.masked_fill(~length_mask(lengths, 300)[..., None], 0.0)
    starts = []
    for seed in range(40):
        y, new = random_crop(x, lengths, 104, generator=torch.Generator().manual_seed(seed))
        assert y.shape == (4, 104, 2) and new.tolist() == [104, 104, 50, 1]
        first = int(y[0, 0, 0])
        assert y[0, :, 0].tolist() == list(range(first, first + 104))  # contiguous, inside
        assert 1 <= first <= 300 - 104 + 1
        starts.append(first)
        assert y[1, :, 0].tolist() == list(range(1, 105))  # exactly the crop length: whole
        assert y[2, :50, 0].tolist() == list(range(1, 51)) and (y[2, 50:] == 0).all()
        assert y[3, 0, 0] == 1 and (y[3, 1:] == 0).all()
        again, _ = random_crop(x, lengths, 104, generator=torch.Generator().manual_seed(seed))
        assert torch.equal(y, again)
    assert len(set(starts)) > 20 and min(starts) < 40 and max(starts) > 160
    short, new = random_crop(x[2:, :50], lengths[2:], 104)
    assert short.shape == (2, 50, 2) and new.tolist() == [50, 1]


def test_training_uses_crops_and_the_global_seed() -> None:
    torch.manual_seed(0)
    net = _net("cnn-exits", crop_frames=8, dropout=0.0).train()
    x, lengths = _batch()
    torch.manual_seed(5)
    a = net(x, lengths)["emotion"]
    torch.manual_seed(5)
    b = net(x, lengths)["emotion"]
    c = net(x, lengths)["emotion"]
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)  # another crop
    net.eval()
    torch.testing.assert_close(net(x, lengths)["emotion"], net(x, lengths)["emotion"])


def test_window_evaluation_averages_windows_covering_the_clip() -> None:
    lengths = torch.tensor([250, 50, 104])
    x = torch.arange(1, 251, dtype=torch.float32)[None, :, None].repeat(3, 1, 1)
    x = x.masked_fill(~length_mask(lengths, 250)[..., None], 0.0)
    w, wl, owner = split_windows(x, lengths, 104)
    assert owner.tolist() == [0, 0, 0, 1, 2] and wl.tolist() == [104, 104, 104, 50, 104]
    assert [int(w[i, 0, 0]) for i in range(5)] == [1, 105, 147, 1, 1]  # last aligned to the end
    assert int(w[2, -1, 0]) == 250 and (w[3, 50:] == 0).all()
    torch.manual_seed(0)
    net = _net("cnn-exits", crop_frames=12, evaluate="windows").eval()
    xb, lb = _batch()
    got = net(xb, lb)
    clip_mode = _net("cnn-exits", crop_frames=12)
    clip_mode.load_state_dict(net.state_dict())
    clip_mode.eval()
    for b, n in enumerate(lb.tolist()):
        parts, plen, _ = split_windows(xb[b:b + 1], lb[b:b + 1], 12)
        expected = clip_mode(parts, plen)["country"].mean(dim=0)
        torch.testing.assert_close(got["country"][b], expected, atol=1e-5, rtol=1e-5)
    short = lb <= 12
    torch.testing.assert_close(got["emotion"][short], clip_mode(xb, lb)["emotion"][short])


# -- recipes ----------------------------------------------------------------------------------
CNN_RECIPES = ["exvo-cnn-equal", "exvo-cnn-uw", "exvo-cnn-ruw", "exvo-cnn-rruw", "exvo-cnn-dwa",
               "exvo-cnn-druw", "exvo-resnet18", "exvo-resnet18-mtl", "exvo-resnet34",
               "exvo-resnet34-mtl", "exvo-resnet50", "exvo-resnet50-mtl"]


def test_recipes_state_paper_numbers_and_build_the_full_nets() -> None:
    from data.tasks import parse_tasks
    from heads.recipes import load_recipe
    from heads.config import TrainOptions
    from heads.training import Output

    for name in CNN_RECIPES:
        r = load_recipe(name)
        assert r.task == "exvo" and r.description and r.reproduces
        opts = TrainOptions.from_dict(r.options)
        assert opts.frames_field == "logmel"
        outputs = [Output(tg.name, t.name, tg, "ccc") for t in parse_tasks(r.task) for tg in t.targets]
        groups = [[o] for o in outputs] if opts.separate else [outputs]
        n_mels = int(r.features[0].split(":")[1].split(",")[0])  # logmel:N[,options]
        for group in groups:
            net = build_net(r.head, n_mels, [o.spec() for o in group], **dict(opts.net))
            if r.head == "cnn-exits":
                assert net.exit_of == {"emotion": 5, "country": 3, "age": 1}
                assert opts.optimizer == "adamw" and opts.batch_size == 32 and opts.epochs == 60
                assert n_mels == 64 and net.config.crop_frames == 512  # the paper's 64 x 512
            else:
                assert opts.weighting == ("equal" if opts.separate else "fixed:5,0.05,0.05") and opts.lr == 3e-4
                assert opts.batch_size == 64 and n_mels == 128 and net.config.output == "linear"
    recipes = {n: load_recipe(n) for n in CNN_RECIPES}
    assert recipes["exvo-cnn-druw"].reproduces[0].scores["exvo"] == 0.423
    assert recipes["exvo-cnn-druw"].reproduces[1].scores["exvo"] == 0.394
    assert recipes["exvo-resnet18"].reproduces[0].scores["exvo"] == 0.416
    assert recipes["exvo-resnet18"].options["separate"] is True
    assert "min-max" in recipes["exvo-resnet18"].description
    assert {recipes[f"exvo-cnn-{w}"].options["weighting"] for w in
            ("equal", "uw", "ruw", "rruw", "dwa", "druw")} == {"equal", "uw", "ruw", "rruw", "dwa", "druw"}


# -- end to end -------------------------------------------------------------------------------
def _spectrogram_dataset(n_train: int = 192, n_val: int = 96, seed: int = 0):
    """Synthetic ExVo clips: country = which quarter of the bands carries a stripe; emotion and
    age follow the clip's loudness. Lengths 6 to 80 frames, crops of 24 frames."""
    from data.tasks import get_task
    from heads.sequences import InMemorySequences
    from heads.dataset import SequenceDataset

    rng = np.random.default_rng(seed)
    n = n_train + n_val
    country = rng.integers(0, 4, n)
    loud = rng.uniform(0, 1, n)
    arrays = []
    for i in range(n):
        s = rng.normal(size=(int(rng.integers(6, 81)), D)).astype(np.float32)
        s[:, 4 * country[i]:4 * country[i] + 4] += 2.5
        s += 3.0 * loud[i]
        arrays.append(s)
    emotion = np.stack([loud if j % 2 == 0 else 1 - loud for j in range(10)], axis=1).astype(np.float32)
    age = (20 + 30 * loud).astype(np.float32)[:, None]
    split = np.array(["Train"] * n_train + ["Val"] * n_val)
    task = get_task("exvo")
    truths = {"exvo": {"emotion": emotion, "country": country.astype(np.int64), "age": age}}
    ids = [f"c{i}" for i in range(n)]
    return SequenceDataset(ids, split, np.zeros((n, 0), np.float32), [task], truths, [],
                           sequences=InMemorySequences.from_arrays(arrays))


def test_multi_exit_cnn_learns_a_synthetic_exvo_problem(tmp_path) -> None:
    from heads.base import FitOptions
    from heads.config import ExperimentConfig
    from heads.experiment import run_dir_of
    from heads.registry import HEADS

    ds = _spectrogram_dataset()
    cfg = ExperimentConfig(workdir=str(tmp_path), task="exvo", features=("synthetic",),
                           head="cnn-exits", run_name="cnn", options={
                               "epochs": 8, "batch_size": 32, "lr": 3e-3, "optimizer": "adamw",
                               "weighting": "druw", "patience": 0, "device": "cpu",
                               "net": {"channels": (6, 8, 8, 8, 8), "crop_frames": 24,
                                       "head_hidden": 16, "dropout": 0.0}})
    result = HEADS[cfg.head].fit(ds, ds.tasks, seed=0, out_dir=run_dir_of(cfg),
                                 options=FitOptions(head_options=cfg.options))
    preds, info = result.predictions, result.params
    val = ds.rows("Val")
    truth, pred = ({k: v[val] for k, v in d["exvo"].items()} for d in (ds.truths, preds))
    country_acc = float((pred["country"] == truth["country"]).mean())
    emotion_r = float(np.corrcoef(pred["emotion"][:, 0], truth["emotion"][:, 0])[0, 1])
    age_mae = float(np.abs(pred["age"] - truth["age"]).mean())
    assert info["epochs_run"] == 8 and info["device"] == "cpu"
    assert country_acc > 0.6, country_acc  # chance: 0.25
    assert emotion_r > 0.6, emotion_r
    assert age_mae < 6.0, age_mae  # the Train mean as prediction: about 7.5


# -- CUDA -------------------------------------------------------------------------------------
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", CNNS)
def test_cuda_matches_cpu(name: str) -> None:
    torch.manual_seed(0)
    net = _net(name, evaluate="windows", crop_frames=16).eval()
    x, lengths = _batch()
    ref = net(x, lengths)
    got = net.to("cuda")(x.cuda(), lengths)
    for task in ref:
        torch.testing.assert_close(got[task].cpu(), ref[task], atol=1e-4, rtol=1e-3)
    net.train()
    out = net(x.cuda(), lengths.cuda())
    sum(v.sum() for v in out.values()).backward()
    y, new = random_crop(x.cuda(), lengths.cuda(), 16)
    assert y.device.type == "cuda" and new.tolist() == lengths.clamp_max(16).tolist()
