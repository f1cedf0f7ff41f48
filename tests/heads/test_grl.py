"""Gradient reversal: identity forward, minus beta times the plain gradient backward; the
speaker-adversary head in its two modes and two placements of beta."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from heads.grl import AdversaryConfig, AdversaryHead, grad_reverse, masked_mean_pool


def _grad(fn, x0: torch.Tensor) -> torch.Tensor:
    x = x0.clone().requires_grad_(True)
    fn(x).backward()
    return x.grad


@pytest.mark.parametrize("beta", [0.0, 0.1, 1.0, 2.5])
def test_grl_gradient_is_minus_beta_times_the_plain_gradient(beta):
    torch.manual_seed(0)
    x0 = torch.randn(5, 7, dtype=torch.float64)
    w = torch.randn(7, 3, dtype=torch.float64)

    def loss(z):
        return torch.tanh(z @ w).pow(2).sum()

    plain = _grad(loss, x0)
    reversed_ = _grad(lambda z: loss(grad_reverse(z, beta)), x0)
    torch.testing.assert_close(reversed_, -beta * plain, rtol=0, atol=1e-12)
    assert torch.equal(grad_reverse(x0, beta), x0)  # identity forward


def test_grl_passes_gradcheck_of_the_reversed_map():
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    # the reversed layer is the identity whose Jacobian is -beta I
    y = grad_reverse(x, 0.3)
    (jac,) = torch.autograd.grad(y, x, grad_outputs=torch.eye(12, dtype=torch.float64).view(12, 4, 3),
                                 is_grads_batched=True)
    torch.testing.assert_close(jac.view(12, 12), -0.3 * torch.eye(12, dtype=torch.float64))


@pytest.mark.parametrize("beta", [-1.0, float("nan"), float("inf")])
def test_grl_refuses_bad_beta(beta):
    with pytest.raises(ValueError, match="beta must be a finite number >= 0"):
        grad_reverse(torch.ones(2), beta)
    with pytest.raises(ValueError, match="beta must be"):
        AdversaryConfig(in_dim=4, n_speakers=3, beta=beta)


def _encoder_and_head_grads(mode: str, beta: float, beta_at: str, seed: int = 0):
    """Gradients of the head's loss w.r.t. an encoder's weight and the classifier's weight."""
    torch.manual_seed(seed)
    enc = torch.nn.Linear(6, 8).double()
    frames = torch.randn(3, 5, 6, dtype=torch.float64)
    lengths = torch.tensor([5, 3, 1])
    speakers = torch.tensor([0, 2, 1])
    torch.manual_seed(1)
    head = AdversaryHead(AdversaryConfig(in_dim=8, n_speakers=3, beta=beta, mode=mode, beta_at=beta_at)).double()
    logits = head(enc(frames), lengths)
    head.loss(logits, speakers).backward()
    return enc.weight.grad.clone(), head.classifier[0].weight.grad.clone(), logits.detach()


def _plain_grads(seed: int = 0):
    """The same computation written out without the head: plain CE through a mean pool."""
    torch.manual_seed(seed)
    enc = torch.nn.Linear(6, 8).double()
    frames = torch.randn(3, 5, 6, dtype=torch.float64)
    lengths = [5, 3, 1]
    speakers = torch.tensor([0, 2, 1])
    torch.manual_seed(1)
    lin = torch.nn.Linear(8, 3).double()
    z = enc(frames)
    pooled = torch.stack([z[b, :n].mean(0) for b, n in enumerate(lengths)])
    F.cross_entropy(lin(pooled), speakers).backward()
    return enc.weight.grad.clone(), lin.weight.grad.clone()


@pytest.mark.parametrize("beta", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("beta_at", ["loss", "grl"])
def test_encoder_gets_minus_beta_in_reverse_and_plus_beta_in_forward(beta, beta_at):
    enc_plain, cls_plain = _plain_grads()
    enc_rev, cls_rev, _ = _encoder_and_head_grads("reverse", beta, beta_at)
    enc_fwd, cls_fwd, _ = _encoder_and_head_grads("forward", beta, beta_at)
    torch.testing.assert_close(enc_rev, -beta * enc_plain, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(enc_fwd, beta * enc_plain, rtol=1e-10, atol=1e-12)
    # the classifier always learns to classify speakers: at rate beta (loss) or 1 (grl)
    rate = beta if beta_at == "loss" else 1.0
    torch.testing.assert_close(cls_rev, rate * cls_plain, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(cls_fwd, rate * cls_plain, rtol=1e-10, atol=1e-12)


def test_padding_never_reaches_the_head():
    head = AdversaryHead(AdversaryConfig(in_dim=4, n_speakers=2))
    x = torch.randn(2, 6, 4)
    lengths = torch.tensor([6, 2])
    y = head(x, lengths)
    x2 = x.clone()
    x2[1, 2:] = 1e6  # garbage after the true frames
    torch.testing.assert_close(head(x2, lengths), y)
    torch.testing.assert_close(masked_mean_pool(x, lengths)[1], x[1, :2].mean(0))
    pooled = torch.randn(3, 4)
    assert torch.equal(masked_mean_pool(pooled), pooled)
    with pytest.raises(ValueError, match=r"lengths must be \(2,\) in \[1, 6\]"):
        head(x, torch.tensor([7, 1]))
    with pytest.raises(ValueError, match="lengths go with frame sequences"):
        masked_mean_pool(pooled, torch.tensor([1, 1, 1]))


def test_loss_skips_unlabelled_clips_and_config_is_checked():
    head = AdversaryHead(AdversaryConfig(in_dim=4, n_speakers=3, beta=0.5, hidden=5, dropout=0.1)).eval()
    logits = head(torch.randn(3, 4))
    want = 0.5 * F.cross_entropy(logits[[0, 2]], torch.tensor([2, 0]))
    torch.testing.assert_close(head.loss(logits, torch.tensor([2, -1, 0])), want)
    assert head.loss(logits, torch.tensor([-1, -1, -1])).item() == 0.0
    assert head.extra_state()["beta"] == 0.5 and head.extra_state()["mode"] == "reverse"
    with pytest.raises(ValueError, match=r"mode must be one of \('reverse', 'forward'\)"):
        AdversaryConfig(in_dim=4, n_speakers=3, mode="backward")
    with pytest.raises(ValueError, match="beta_at must be one of"):
        AdversaryConfig(in_dim=4, n_speakers=3, beta_at="both")
    with pytest.raises(ValueError, match="n_speakers must be at least 2"):
        AdversaryConfig(in_dim=4, n_speakers=1)


def test_reversal_lowers_speaker_information_in_a_trained_encoder():
    """A tiny encoder trained with reversal ends with features from which a fresh linear probe
    recovers the speaker worse than from an encoder trained in forward mode."""

    def train(mode: str) -> float:
        g = torch.Generator().manual_seed(0)
        n, d = 256, 6
        speaker = torch.randint(0, 2, (n,), generator=g)
        x = torch.randn(n, d, generator=g)
        x[:, 0] += 2.0 * speaker  # speaker in dimension 0
        torch.manual_seed(0)
        enc = torch.nn.Linear(d, 4)
        head = AdversaryHead(AdversaryConfig(in_dim=4, n_speakers=2, beta=1.0, mode=mode))
        opt = torch.optim.SGD([*enc.parameters(), *head.parameters()], lr=0.1)
        for _ in range(300):
            opt.zero_grad()
            head.loss(head(enc(x)), speaker).backward()
            opt.step()
        z = enc(x).detach()
        probe = torch.nn.Linear(4, 2)
        popt = torch.optim.Adam(probe.parameters(), lr=0.05)
        for _ in range(300):
            popt.zero_grad()
            F.cross_entropy(probe(z), speaker).backward()
            popt.step()
        return float((probe(z).argmax(1) == speaker).float().mean())

    forward_acc, reverse_acc = train("forward"), train("reverse")
    assert forward_acc > 0.8
    assert reverse_acc < forward_acc - 0.1


@pytest.mark.gpu
def test_grl_on_cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    x0 = torch.randn(4, 3, device="cuda")
    plain = _grad(lambda z: (z ** 3).sum(), x0)
    torch.testing.assert_close(_grad(lambda z: (grad_reverse(z, 0.1) ** 3).sum(), x0), -0.1 * plain)
    head = AdversaryHead(AdversaryConfig(in_dim=3, n_speakers=2)).cuda()
    logits = head(torch.randn(2, 5, 3, device="cuda"), torch.tensor([5, 2], device="cuda"))
    assert logits.shape == (2, 2) and logits.device.type == "cuda"
