"""KL estimators against hand-computed values and a Monte Carlo check of their bias."""

import math

import pytest
import torch

from mmdps.rl import KL_KINDS, kl_penalty

# d = logp - ref = (.5, -1)
LOGP = torch.tensor([[-1.0, -2.0]])
REF = torch.tensor([[-1.5, -1.0]])


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("k1", [0.5, -1.0]),
        ("k2", [0.125, 0.5]),  # d^2 / 2
        ("abs", [0.5, 1.0]),
        # k3 with x = ref - logp = (-.5, 1): e^-.5 + .5 - 1 = .1065307, e - 1 - 1 = .7182818
        ("k3", [0.1065307, 0.7182818]),
    ],
)
def test_by_hand(kind, expected):
    torch.testing.assert_close(kl_penalty(LOGP, REF, kind), torch.tensor([expected]))


def test_k3_gradient_by_hand():
    # d/dlogp [e^(ref - logp) - (ref - logp) - 1] = 1 - e^(ref - logp) = (1 - e^-.5, 1 - e)
    logp = LOGP.clone().requires_grad_(True)
    ref = REF.clone().requires_grad_(True)
    kl_penalty(logp, ref, "k3").sum().backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[1 - math.exp(-0.5), 1 - math.e]]))
    assert ref.grad is None  # the reference is frozen


def test_k3_clamps():
    logp = torch.tensor([0.0, 0.0])
    ref = torch.tensor([15.0, 30.0])
    torch.testing.assert_close(kl_penalty(logp, ref, "k3"), torch.tensor([10.0, 10.0]))
    # without the output clamp: e^15 - 16, and the log-ratio 30 is clamped to 20 first: e^20 - 21
    unclamped = kl_penalty(logp.double(), ref.double(), "k3", k3_max=None)
    torch.testing.assert_close(unclamped, torch.tensor([math.exp(15) - 16, math.exp(20) - 21], dtype=torch.float64))


def test_k1_and_k3_are_unbiased_and_k3_nonnegative():
    # tokens sampled from p: E[k1] = E[k3] = KL(p || q)
    gen = torch.Generator().manual_seed(0)
    p = torch.tensor([0.5, 0.3, 0.2])
    q = torch.tensor([0.2, 0.3, 0.5])
    exact = (p * (p / q).log()).sum().item()  # .5 ln 2.5 + .2 ln .4 = .2748872
    samples = torch.multinomial(p, 200_000, replacement=True, generator=gen)
    logp, ref = p.log()[samples], q.log()[samples]
    assert kl_penalty(logp, ref, "k1").mean().item() == pytest.approx(exact, abs=0.01)
    k3 = kl_penalty(logp, ref, "k3")
    assert k3.mean().item() == pytest.approx(exact, abs=0.01)
    assert (k3 >= 0).all()


def test_bad_input():
    with pytest.raises(ValueError, match="valid kinds: " + ", ".join(KL_KINDS)):
        kl_penalty(LOGP, REF, "k4")
    with pytest.raises(ValueError, match="ref_logprobs shape"):
        kl_penalty(LOGP, REF[:, :1], "k1")
