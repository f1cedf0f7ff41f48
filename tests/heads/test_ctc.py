"""The CTC head: loss equal to torch's ctc_loss and to the forward algorithm written here,
exact lengths, greedy decoding, the character vocabulary and its JSON file."""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from heads.ctc import (
    BLANK_ID,
    PAPER_VOCAB_SIZE,
    UNK_ID,
    WORD_ID,
    CharVocab,
    CTCConfig,
    CTCHead,
    greedy_decode,
    min_frames,
    normalise_transcript,
    pad_targets,
)


def naive_ctc_nll(log_probs: list[list[float]], target: list[int], blank: int = 0) -> float:
    """-log p(target | x) by the forward (alpha) recursion of Graves et al. 2006, Eq. 6-8,
    on the blank-extended label sequence, in plain Python floats (log space)."""
    ext = [blank]
    for s in target:
        ext += [s, blank]
    S, T = len(ext), len(log_probs)
    neg = -math.inf

    def lse(*xs: float) -> float:
        m = max(xs)
        return m if m == neg else m + math.log(sum(math.exp(x - m) for x in xs))

    alpha = [neg] * S
    alpha[0] = log_probs[0][blank]
    if S > 1:
        alpha[1] = log_probs[0][ext[1]]
    for t in range(1, T):
        new = [neg] * S
        for s in range(S):
            terms = [alpha[s]]
            if s >= 1:
                terms.append(alpha[s - 1])
            if s >= 2 and ext[s] != blank and ext[s] != ext[s - 2]:
                terms.append(alpha[s - 2])
            new[s] = lse(*terms) + log_probs[t][ext[s]]
        alpha = new
    total = lse(alpha[-1], alpha[-2]) if S > 1 else alpha[-1]
    return -total


def _batch(seed: int = 0):
    torch.manual_seed(seed)
    head = CTCHead(CTCConfig(in_dim=5, vocab_size=7)).double()
    frames = torch.randn(4, 12, 5, dtype=torch.float64)
    frame_lengths = torch.tensor([12, 9, 6, 3])
    targets_list = [[3, 4, 4, 5], [6, 3], [4, 4, 4], []]  # repeats need blanks between them
    targets, target_lengths = pad_targets(targets_list)
    return head, frames, frame_lengths, targets_list, targets, target_lengths


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_loss_equals_torch_ctc_loss_and_the_naive_forward_algorithm(reduction):
    head, frames, frame_lengths, targets_list, targets, target_lengths = _batch()
    head = CTCHead(CTCConfig(in_dim=5, vocab_size=7, reduction=reduction)).double()
    head.load_state_dict(_batch()[0].state_dict())
    logp = head(frames)
    got = head.loss(logp, frame_lengths, targets, target_lengths)
    ref = F.ctc_loss(logp.transpose(0, 1), torch.cat([torch.tensor(t, dtype=torch.long) for t in targets_list]),
                     frame_lengths, target_lengths, blank=0, reduction=reduction)
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)
    nll = [naive_ctc_nll(logp[b, : int(frame_lengths[b])].tolist(), targets_list[b]) for b in range(4)]
    if reduction == "sum":
        want = sum(nll)
    else:
        want = sum(n / max(1, len(t)) for n, t in zip(nll, targets_list)) / 4
    assert got.item() == pytest.approx(want, rel=1e-9)


def test_naive_forward_algorithm_by_enumeration():
    """The test's own reference checked once by summing every alignment of a 4-frame input."""
    torch.manual_seed(3)
    logp = torch.log_softmax(torch.randn(4, 3, dtype=torch.float64), -1).tolist()
    target = [1, 2]
    total = 0.0
    import itertools

    for path in itertools.product(range(3), repeat=4):
        collapsed = [s for i, s in enumerate(path) if (i == 0 or s != path[i - 1]) and s != 0]
        if collapsed == target:
            total += math.exp(sum(logp[t][s] for t, s in enumerate(path)))
    assert naive_ctc_nll(logp, target) == pytest.approx(-math.log(total), rel=1e-12)


def test_frames_past_the_length_and_target_padding_never_matter():
    head, frames, frame_lengths, _, targets, target_lengths = _batch()
    base = head.loss(head(frames), frame_lengths, targets, target_lengths)
    frames2 = frames.clone()
    for b, n in enumerate(frame_lengths.tolist()):
        frames2[b, n:] = 1e3 * torch.randn_like(frames2[b, n:])
    targets2 = targets.clone()
    for b, n in enumerate(target_lengths.tolist()):
        targets2[b, n:] = 6
    torch.testing.assert_close(head.loss(head(frames2), frame_lengths, targets2, target_lengths), base)
    assert head.decode(head(frames2), frame_lengths) == head.decode(head(frames), frame_lengths)


def test_loss_gradient_matches_torch():
    head, frames, frame_lengths, targets_list, targets, target_lengths = _batch()
    frames = frames.requires_grad_(True)
    head.loss(head(frames), frame_lengths, targets, target_lengths).backward()
    g_head = frames.grad.clone()
    frames.grad = None
    logp = head(frames)
    F.ctc_loss(logp.transpose(0, 1), targets, frame_lengths, target_lengths, blank=0).backward()
    torch.testing.assert_close(g_head, frames.grad)


def test_impossible_alignments_are_zeroed_or_infinite():
    head = CTCHead(CTCConfig(in_dim=3, vocab_size=5))
    logp = head(torch.randn(1, 3, 3))
    targets, lengths = pad_targets([[3, 3, 3]])  # needs 5 frames
    assert min_frames([3, 3, 3]) == 5 and min_frames([3, 4]) == 2
    assert head.loss(logp, torch.tensor([3]), targets, lengths).item() == 0.0
    strict = CTCHead(CTCConfig(in_dim=3, vocab_size=5, zero_infinity=False))
    assert math.isinf(strict.loss(strict(torch.randn(1, 3, 3)), torch.tensor([3]), targets, lengths).item())


def test_bad_lengths_and_targets_are_refused():
    head, frames, frame_lengths, _, targets, target_lengths = _batch()
    logp = head(frames)
    with pytest.raises(ValueError, match=r"frame lengths must be in \[1, frames=12\]"):
        head.loss(logp, torch.tensor([13, 9, 6, 3]), targets, target_lengths)
    with pytest.raises(ValueError, match=r"frame lengths must be \(4,\)"):
        head.loss(logp, torch.tensor([12, 9]), targets, target_lengths)
    with pytest.raises(ValueError, match="target lengths must be in"):
        head.loss(logp, frame_lengths, targets, torch.tensor([5, 2, 3, 0]))
    bad = targets.clone()
    bad[0, 1] = BLANK_ID
    with pytest.raises(ValueError, match="blank id 0 inside"):
        head.loss(logp, frame_lengths, bad, target_lengths)
    bad[0, 1] = 7
    with pytest.raises(ValueError, match=r"target ids must be in \[1, 6\]"):
        head.loss(logp, frame_lengths, bad, target_lengths)
    with pytest.raises(ValueError, match=r"frames must be \(batch, time, 5\)"):
        head(torch.randn(2, 5))
    with pytest.raises(ValueError, match="reduction must be"):
        CTCConfig(in_dim=2, vocab_size=5, reduction="none")


# --- greedy decoding ---------------------------------------------------------------------


def _scores(paths: list[list[int]], vocab: int = 6) -> torch.Tensor:
    width = max(map(len, paths))
    padded = [p + [0] * (width - len(p)) for p in paths]
    return torch.log(F.one_hot(torch.tensor(padded), vocab).double() * 0.9 + 0.1 / vocab)


@pytest.mark.parametrize(
    "path, want",
    [
        ([3, 3, 0, 3, 4, 4, 0, 0, 5], [3, 3, 4, 5]),  # blank keeps the repeated 3
        ([0, 0, 0], []),
        ([3, 3, 3, 3], [3]),
        ([0, 3, 0, 4, 0], [3, 4]),
        ([3, 4, 3, 4], [3, 4, 3, 4]),
        ([2, 2, 0, 2], [2, 2]),
    ],
)
def test_greedy_decoding_collapses_repeats_then_removes_blanks(path, want):
    assert greedy_decode(_scores([path]), torch.tensor([len(path)])) == [want]


def test_greedy_decoding_reads_only_true_frames():
    paths = [[3, 3, 0, 4], [5, 5]]  # the second padded with blanks; change the padding to 5s
    scores = _scores(paths)
    scores[1, 2:] = _scores([[4, 4]])[0]
    assert greedy_decode(scores, torch.tensor([4, 2])) == [[3, 4], [5]]


# --- vocabulary --------------------------------------------------------------------------


def test_normalisation_drops_markers_and_punctuation():
    assert normalise_transcript("Excuse me.") == "excuse me"
    assert normalise_transcript("Yeah. [LAUGHTER] <noise> I'm OK-ish, 2 times!") == "yeah i'm ok ish 2 times"
    assert normalise_transcript("[BREATHING]") == ""


def test_vocab_from_train_transcripts_save_load(tmp_path):
    train = ["Excuse me.", "Do you have your forms?", None, float("nan"), "[LAUGHTER] Yeah."]
    v = CharVocab.from_texts(train)
    chars = sorted(set("".join(normalise_transcript(t) for t in train if isinstance(t, str)).replace(" ", "")))
    assert v.symbols == ("<blank>", "<unk>", "|", *chars)
    assert v.blank == BLANK_ID and len(v) == 3 + len(chars)
    ids = v.encode("Do you? Zebra!")  # z, b not in Train -> <unk>
    assert ids[2] == WORD_ID and UNK_ID in ids
    assert v.decode(v.encode("do you have your forms")) == "do you have your forms"
    assert v.decode([BLANK_ID, *v.encode("me"), BLANK_ID]) == "me"
    path = tmp_path / "run" / "vocab.json"
    v.save(path)
    assert CharVocab.load(path) == v
    data = json.loads(path.read_text())
    assert data["blank"] == 0 and data["symbols"][:3] == ["<blank>", "<unk>", "|"]
    data["normaliser"] = "other"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="rebuild the vocabulary"):
        CharVocab.load(path)
    path.write_text(json.dumps({"symbols": []}))
    with pytest.raises(ValueError, match="not a version-1 CharVocab"):
        CharVocab.load(path)
    with pytest.raises(ValueError, match="no character"):
        CharVocab.from_texts(["[LAUGHTER]", None])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        v.decode([99])


def test_full_english_text_gives_a_vocabulary_near_the_papers_32():
    text = "the quick brown fox jumps over the lazy dog it's"
    v = CharVocab.from_texts([text])
    assert len(v) == 3 + 26 + 1  # specials, letters, apostrophe
    assert PAPER_VOCAB_SIZE == 32


def test_min_count_maps_rare_characters_to_unk():
    v = CharVocab.from_texts(["aaa b"], min_count=2)
    assert v.symbols == ("<blank>", "<unk>", "|", "a")
    assert v.encode("ab") == [3, UNK_ID]


def test_decoded_ids_round_trip_through_the_head():
    v = CharVocab.from_texts(["hello world"])
    target = v.encode("hello world")
    # a path that spells the target with blanks between repeats (the double l)
    path = []
    for i, s in enumerate(target):
        if i and target[i - 1] == s:
            path.append(BLANK_ID)
        path += [s, s]
    scores = _scores([path], vocab=len(v))
    (ids,) = greedy_decode(scores, torch.tensor([len(path)]))
    assert v.decode(ids) == "hello world"


@pytest.mark.gpu
def test_cuda_loss_gradient_and_decoding_equal_cpu():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    head, frames, frame_lengths, _, targets, target_lengths = _batch()
    frames = frames.requires_grad_(True)
    cpu_loss = head.loss(head(frames), frame_lengths, targets, target_lengths)
    cpu_loss.backward()
    cpu_grad, frames.grad = frames.grad.clone(), None
    gpu_head = head.cuda()
    x = frames.detach().cuda().requires_grad_(True)
    logp = gpu_head(x)
    gpu_loss = gpu_head.loss(logp, frame_lengths.cuda(), targets.cuda(), target_lengths.cuda())
    gpu_loss.backward()
    torch.testing.assert_close(gpu_loss.cpu(), cpu_loss.detach(), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(x.grad.cpu(), cpu_grad, rtol=1e-7, atol=1e-9)
    assert gpu_head.decode(logp, frame_lengths.cuda()) == head.cpu().decode(head(frames), frame_lengths)
