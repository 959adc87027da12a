"""Sampling: each setting's property, checked on known logits."""

import pytest
import torch

from nanogpt.sampling import SamplingParams, filter_logits, make_generator, sample

LOGITS = torch.tensor([[3.0, 1.0, 2.5, -1.0, 0.5, 2.9, -2.0, 0.0]])


def draws(params: SamplingParams, n: int = 4000, logits: torch.Tensor = LOGITS) -> set[int]:
    gen = make_generator(0)
    return set(sample(logits.expand(n, -1), params, gen).tolist())


def test_temperature_zero_is_argmax():
    logits = torch.randn(16, 50)
    out = sample(logits, SamplingParams(temperature=0, top_k=None))
    assert torch.equal(out, logits.argmax(-1))


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_top_k_never_samples_outside_the_k(k):
    allowed = set(torch.topk(LOGITS[0], k).indices.tolist())
    seen = draws(SamplingParams(temperature=2.0, top_k=k))
    assert seen <= allowed
    assert len(seen) == k  # with 4000 draws at temperature 2 every allowed token appears


def test_top_p_keeps_the_smallest_set_reaching_p():
    probs = torch.softmax(LOGITS[0], -1)
    order = torch.argsort(probs, descending=True).tolist()
    p = float(probs[order[0]] + probs[order[1]]) + 1e-3  # needs the top three tokens
    seen = draws(SamplingParams(temperature=1.0, top_k=None, top_p=p))
    assert seen == set(order[:3])
    tiny = draws(SamplingParams(temperature=1.0, top_k=None, top_p=1e-6))
    assert tiny == {order[0]}  # the most likely token is always kept


def test_filter_keeps_exactly_k_even_with_ties():
    logits = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0]])
    assert torch.isfinite(filter_logits(logits, 2, None)).sum() == 2


def test_repetition_penalty_lowers_seen_tokens():
    logits = torch.tensor([[2.0, 1.9, -1.0]])
    seen = torch.tensor([[True, False, True]])
    out = sample(
        logits, SamplingParams(temperature=0, top_k=None, repetition_penalty=1.5), None, seen
    )
    assert out.item() == 1  # 2.0 / 1.5 < 1.9


def test_a_seed_reproduces_and_another_seed_differs():
    logits = torch.zeros(1, 1000).expand(64, -1)
    params = SamplingParams(temperature=1.0, top_k=None)
    a = sample(logits, params, make_generator(7))
    assert torch.equal(a, sample(logits, params, make_generator(7)))
    assert not torch.equal(a, sample(logits, params, make_generator(8)))


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_k": 0}, "top_k"),
        ({"top_k": 2.5}, "top_k"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"repetition_penalty": 0.5}, "repetition_penalty"),
        ({"seed": "x"}, "seed"),
    ],
)
def test_bad_settings_are_errors_that_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        SamplingParams(**kwargs)
