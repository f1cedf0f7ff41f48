"""Paper 002's sequence head inside fine-tuning (``head_rnn``, ``frame_pooling``) and the
``adam`` optimiser, on tiny random checkpoints and the demo corpus.

The paper (002 sec. III): the layer's sequence embeddings "are then fed into an RNN ...
Afterward, a fully connected layer changes the embeddings' dimension to the output sizes ...
Finally, a pooling layer is used"; sec. IV.B: "It includes 2 LSTM layers and the hidden size is
fixed to 512", "We used Adam optimizer with the weight decay coefficient of 0.0625". References
here are written from torch's own ``nn.LSTM`` / ``nn.Linear`` on each clip's true frames alone.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import heads.finetune.run as ft_run
from data.demo import make_demo_corpus
from data.workdir import save_corpus_ref
from extract.base import SAMPLE_RATE
from extract.pooling import POOLINGS
from heads.finetune import FinetuneConfig, finetune, load_finetuned
from heads.finetune.backbone import build_heads
from heads.finetune.batches import eval_plan
from heads.finetune.config import FRAME_POOLINGS, MAX_EVAL_CLIPS, parse_head_rnn
from heads.finetune.stages import HEAD_OUTPUTS, make_optimizer
from heads.training.outputs import to_label_space
from tests.extract.conftest import build_tiny_model

HIGH = [("high", "regression", 10)]
TWO_OUTPUTS = [("high", "regression", 3), ("type", "classification", 4)]


def sequence_heads(input_dim: int, specs, *, layers: int = 2, hidden: int = 512,
                   pooling: str = "last", seed: int = 0):
    torch.manual_seed(seed)
    return build_heads(input_dim, specs, {"head_rnn": f"lstm:{layers}x{hidden}", "head_hidden": 0,
                                          "output": "linear", "frame_pooling": pooling}).eval()


def test_the_head_is_the_papers_lstm_then_one_linear_layer() -> None:
    heads = sequence_heads(1024, HIGH)
    assert heads.sequence and len(heads.nets) == 1
    modules = list(heads.nets[0].children())
    assert [type(m) for m in modules] == [nn.LSTM, nn.Linear]
    lstm, fc = modules
    assert (lstm.input_size, lstm.hidden_size, lstm.num_layers) == (1024, 512, 2)
    assert lstm.batch_first and not lstm.bidirectional
    assert (fc.in_features, fc.out_features) == (512, 10)  # A-VB-HIGH: 10 outputs
    assert parse_head_rnn("lstm:2x512") == ("lstm", 2, 512)
    assert set(FRAME_POOLINGS) <= set(POOLINGS)


def manual(heads, clip: torch.Tensor, pooling: str) -> torch.Tensor:
    """torch's LSTM and Linear on the clip's true frames alone, pooled by hand."""
    net = heads.nets[0]
    with torch.no_grad():
        out, _ = net.lstm(clip[None])  # (1, n, hidden): no padding at all
        y = net.frame_out(out)[0]  # (n, S)
    return {"first": y[0], "last": y[-1], "max": y.max(dim=0).values, "mean": y.mean(dim=0)}[pooling]


@pytest.mark.parametrize("pooling", FRAME_POOLINGS)
def test_a_clip_alone_and_beside_a_longer_clip_gives_the_same_output(pooling: str) -> None:
    heads = sequence_heads(6, TWO_OUTPUTS, layers=2, hidden=5, pooling=pooling)
    g = torch.Generator().manual_seed(1)
    short, long = torch.randn(4, 6, generator=g), torch.randn(9, 6, generator=g)
    batch = torch.full((2, 9, 6), 1e3)  # padding that would show if it were read
    batch[0, :4], batch[1] = short, long
    with torch.no_grad():
        alone = heads(short[None], torch.tensor([4]))
        both = heads(batch, torch.tensor([4, 9]))
    ref = manual(heads, short, pooling)
    for name, (k0, k1) in {"high": (0, 3), "type": (3, 7)}.items():
        torch.testing.assert_close(both[name][0], alone[name][0], rtol=0, atol=1e-5)
        torch.testing.assert_close(alone[name][0], ref[k0:k1], rtol=0, atol=1e-5)
    long_ref = manual(heads, long, pooling)
    torch.testing.assert_close(both["high"][1], long_ref[:3], rtol=0, atol=1e-5)


def test_last_is_the_clips_own_last_true_frame_not_the_padded_end() -> None:
    heads = sequence_heads(6, HIGH, layers=2, hidden=5, pooling="last")
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 7, 6, generator=g)
    with torch.no_grad():
        out = heads(x, torch.tensor([3, 7]))["high"]
        net = heads.nets[0]
        # by hand: run the LSTM over frames 0..2 only, Linear on frame 2's output
        h = torch.zeros(2, 1, 5)
        c = torch.zeros(2, 1, 5)
        seq = x[0:1, :3]
        for t in range(3):
            step, (h, c) = net.lstm(seq[:, t:t + 1], (h, c))
        own_last = net.frame_out(step[0, 0])
        padded_end = net.frame_out(net.lstm(x[0:1])[0][0, -1])
    torch.testing.assert_close(out[0], own_last, rtol=0, atol=1e-5)
    assert not torch.allclose(out[0], padded_end, atol=1e-3)


def test_adam_is_torch_adam_with_l2_decay_and_adamw_stays_the_default(tmp_path: Path) -> None:
    w0 = torch.tensor([1.0, -2.0])
    grad = torch.tensor([0.5, 0.25])

    def one_step(cfg: FinetuneConfig) -> tuple[torch.optim.Optimizer, torch.Tensor]:
        p = nn.Parameter(w0.clone())
        opt = make_optimizer(cfg, [{"params": [p]}])
        p.grad = grad.clone()
        opt.step()
        return opt, p.detach()

    base = dict(workdir=str(tmp_path), model="m", task="avb-high", lr=1e-4)
    assert FinetuneConfig(**base).optimizer == "adamw"
    adamw, _ = one_step(FinetuneConfig(**base, weight_decay=0.0625))
    assert type(adamw) is torch.optim.AdamW
    cfg = FinetuneConfig(**base, weight_decay=0.0625, optimizer="adam")
    cfg.check()
    adam, p = one_step(cfg)
    assert type(adam) is torch.optim.Adam and adam.param_groups[0]["weight_decay"] == 0.0625
    # Adam's first step with L2: g' = g + wd w; w - lr g' / (|g'| + eps) (bias corrections cancel)
    g2 = grad + 0.0625 * w0
    torch.testing.assert_close(p, w0 - 1e-4 * g2 / (g2.abs() + 1e-8), rtol=0, atol=1e-9)


def test_bad_sequence_options_say_what_to_give(tmp_path: Path) -> None:
    base = dict(workdir=str(tmp_path), model="m", task="avb-high", frozen_epochs=0, head_hidden=0)
    with pytest.raises(ValueError, match="frame_pooling 'last' needs a sequence head: give --head-rnn"):
        FinetuneConfig(**base, frame_pooling="last").check()
    with pytest.raises(ValueError,
                       match="option head_rnn must be KIND:LAYERSxHIDDEN.*lstm:2x512.*'gru:2x512'"):
        FinetuneConfig(**base, head_rnn="gru:2x512").check()
    with pytest.raises(ValueError, match="head_rnn must be"):
        FinetuneConfig(**base, head_rnn="lstm:0x512").check()
    with pytest.raises(ValueError, match=r"option head_hidden must be 0; got 256 \(give --head-hidden 0\)"):
        FinetuneConfig(**{**base, "head_hidden": 256}, head_rnn="lstm:2x512").check()
    with pytest.raises(ValueError, match=r"frozen_epochs must be 0; got 10 \(give --frozen-epochs 0\)"):
        FinetuneConfig(**{**base, "frozen_epochs": 10}, head_rnn="lstm:2x512").check()
    with pytest.raises(ValueError, match="option optimizer must be one of"):
        FinetuneConfig(**base, optimizer="sgd").check()
    with pytest.raises(ValueError, match="frame_pooling must be one of"):
        FinetuneConfig(**base, head_rnn="lstm:1x8", frame_pooling="std").check()


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("ftseq")
    corpus = make_demo_corpus(root / "corpus", n_clips=40, seed=3)
    model = build_tiny_model("data2vec-audio", root / "tiny-d2v")
    wd = root / "wd"
    save_corpus_ref(wd, corpus, "avb")
    return {"root": root, "model": model, "wd": wd}


def test_finetune_trains_the_sequence_head_and_val_reads_it(setup: dict) -> None:
    captured: dict = {}
    original = ft_run.run_stage2

    def spy(run_state, t0):
        captured["run"] = run_state
        return original(run_state, t0)

    cfg = FinetuneConfig(workdir=str(setup["wd"]), model=str(setup["model"]), task="avb-high,avb-type",
                         frozen_epochs=0, epochs=1, batch_size=8, lr=1e-3, max_seconds=1.0,
                         patience=0, device="cpu", workers=1, n_boot=20, layer=2, head_hidden=0,
                         head_rnn="lstm:2x8", frame_pooling="last", optimizer="adam",
                         weight_decay=0.0625, run_name="seq")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ft_run, "run_stage2", spy)
        result = finetune(cfg)
    run = captured["run"]
    assert np.isfinite(result.metrics["val"]["score"])
    # the Val predictions are the sequence head's on the clips' frames
    rows = run.val_rows[:5]
    emb, good, extra = run.encode_rows(rows, "check")
    assert list(good) == list(rows) and all(HEAD_OUTPUTS in e for e in extra)
    # the reference: the same eval batches (the tiny backbone itself is not padding-free), the
    # head called directly on their frames
    waves = run.waves(good)
    plan = eval_plan([len(w) for w in waves], max_samples=cfg.eval_batch_seconds * SAMPLE_RATE,
                     max_clips=MAX_EVAL_CLIPS)
    run.backbone.model.eval()
    with torch.no_grad():
        for batch in plan:
            h, frames = run.backbone.frames([waves[i] for i in batch])
            direct = run.heads.eval()(h, frames)
            for j, i in enumerate(batch):
                for name in direct:
                    np.testing.assert_allclose(extra[i][HEAD_OUTPUTS][name], direct[name][j].numpy(),
                                               atol=1e-6, rtol=0)
    preds = run.predict(emb, good, good, extra)
    high = next(o for o in run.outputs if o.name == "high")
    np.testing.assert_allclose(preds["high"], to_label_space(high, np.stack(
        [e[HEAD_OUTPUTS]["high"] for e in extra])), rtol=0, atol=0)
    # saved: the same head, rebuilt from heads.pt
    _, heads, ckpt = load_finetuned(result.run_dir)
    assert (ckpt["head_rnn"], ckpt["frame_pooling"]) == ("lstm:2x8", "last") and heads.sequence
    saved = json.loads((result.run_dir / "config.json").read_text())["options"]
    assert (saved["head_rnn"], saved["frame_pooling"], saved["optimizer"]) == ("lstm:2x8", "last", "adam")
    for k, v in run.heads.state_dict().items():
        torch.testing.assert_close(heads.state_dict()[k], v, rtol=0, atol=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_sequence_head_run(setup: dict) -> None:
    """The LSTM runs in float32 on the bfloat16-autocast backbone's frames."""
    r = finetune(FinetuneConfig(workdir=str(setup["wd"]), model=str(setup["model"]), task="avb-high",
                                frozen_epochs=0, epochs=1, batch_size=8, lr=1e-3, max_seconds=1.0,
                                patience=0, device="cuda", workers=1, n_boot=20, head_hidden=0,
                                head_rnn="lstm:2x8", frame_pooling="last", optimizer="adam",
                                run_name="seq-cuda"))
    assert np.isfinite(r.metrics["val"]["score"])


def test_finetune_recipe_slabcnu_ft_high_runs_the_papers_head_through_the_cli(
        setup: dict, capsys: pytest.CaptureFixture) -> None:
    """`finetune --recipe slabcnu-ft-high` with a tiny backbone (its layer 2: it has 3), one
    epoch: the recipe's head, pooling and optimiser reach the run."""
    from cli.main import main

    rc = main(["-q", "finetune", "--workdir", str(setup["wd"]), "--recipe", "slabcnu-ft-high",
               "--features", f"ssl:{setup['model']}", "--layer", "2", "--epochs", "1",
               "--max-seconds", "1", "--device", "cpu", "--workers", "1", "--run-name", "paper",
               "--no-extract", "--no-progress"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    run_dir = setup["wd"] / "finetuned" / "paper"
    opts = json.loads((run_dir / "config.json").read_text())["options"]
    assert (opts["head_rnn"], opts["frame_pooling"], opts["optimizer"]) == ("lstm:2x512", "last", "adam")
    assert (opts["weight_decay"], opts["lr"], opts["batch_size"], opts["head_hidden"]) == (
        0.0625, 1e-4, 16, 0)
    _, heads, _ = load_finetuned(run_dir)
    lstm = heads.nets[0].lstm
    assert (lstm.num_layers, lstm.hidden_size) == (2, 512)
    assert heads.nets[0].frame_out.out_features == 10
