"""Loss terms against hand-computed values on tiny batches."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from cryoavae.core.errors import InputError
from cryoavae.train.losses import (
    affinity_loss,
    avae_loss,
    kl_divergence,
    reconstruction_error,
)


def test_mse_hand_computed():
    recon = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(2, 1, 2)
    assert reconstruction_error(recon, torch.zeros_like(recon)).item() == pytest.approx(7.5)


def test_bce_reads_reconstruction_as_logits_and_target_as_probability():
    logits = torch.tensor([math.log(3.0), 0.0]).view(1, 1, 2)  # sigmoid: 0.75, 0.5
    target = torch.tensor([0.25, 1.0]).view(1, 1, 2)
    first = -(0.25 * math.log(0.75) + 0.75 * math.log(0.25))
    second = -math.log(0.5)
    got = reconstruction_error(logits, target, "bce").item()
    assert got == pytest.approx((first + second) / 2, rel=1e-6)
    # swapping the arguments would give a different number
    swapped = F.binary_cross_entropy_with_logits(target, logits.clamp(0, 1)).item()
    assert got != pytest.approx(swapped, rel=1e-3)


def test_reconstruction_refuses_unknown_kind_naming_the_setting():
    x = torch.zeros(1, 1, 2)
    with pytest.raises(InputError, match="training.reconstruction_loss"):
        reconstruction_error(x, x, "l1")


def test_kl_zero_at_standard_normal():
    mu, log_var = torch.zeros(5, 3), torch.zeros(5, 3)
    assert kl_divergence(mu, log_var).item() == 0.0
    assert kl_divergence(mu, log_var, "sum").item() == 0.0


def test_kl_hand_computed_mean_and_sum():
    # sample 0: mu (1, 0), var (1, 2): 0.5 * [(1 + 1 - 1 - 0) + (2 + 0 - 1 - ln 2)] = 1 - ln2 / 2
    # sample 1: mu (0, 0), var (1, 1): 0
    mu = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    log_var = torch.tensor([[0.0, math.log(2.0)], [0.0, 0.0]])
    per_sample = 1 - math.log(2.0) / 2
    assert kl_divergence(mu, log_var, "sum").item() == pytest.approx(per_sample)
    assert kl_divergence(mu, log_var, "mean").item() == pytest.approx(per_sample / 2)
    with pytest.raises(InputError, match="training.kl_reduction"):
        kl_divergence(mu, log_var, "max")


def test_affinity_hand_computed():
    mu = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    labels = torch.tensor([0, 1, 0])
    a = torch.tensor([[1.0, 0.5], [0.5, 1.0]])
    # pairs: (0,1) |0 - 0.5|, (0,2) |1/sqrt2 - 1|, (1,2) |1/sqrt2 - 0.5|
    s = 1 / math.sqrt(2)
    expected = (0.5 + (1 - s) + (s - 0.5)) / 3
    assert affinity_loss(mu, labels, a).item() == pytest.approx(expected, rel=1e-6)


def test_affinity_zero_when_cosine_equals_prior():
    gen = torch.Generator().manual_seed(0)
    mu = torch.randn(6, 4, generator=gen)
    unit = F.normalize(mu, dim=1)
    a = unit @ unit.T  # one class per sample: the prior is exactly the cosine matrix
    assert affinity_loss(mu, torch.arange(6), a).item() == pytest.approx(0.0, abs=1e-6)


def test_affinity_matches_a_loop_over_pairs():
    gen = torch.Generator().manual_seed(1)
    mu = torch.randn(9, 5, generator=gen)
    labels = torch.randint(0, 3, (9,), generator=gen)
    a = torch.rand(3, 3, generator=gen) * 2 - 1
    a = (a + a.T) / 2
    diffs = [
        abs(F.cosine_similarity(mu[i], mu[j], dim=0).item() - a[labels[i], labels[j]].item())
        for i, j in itertools.combinations(range(9), 2)
    ]
    assert affinity_loss(mu, labels, a).item() == pytest.approx(sum(diffs) / len(diffs), rel=1e-5)


def test_affinity_of_a_single_sample_is_zero():
    assert affinity_loss(torch.ones(1, 3), torch.tensor([0]), torch.eye(2)).item() == 0.0


def test_total_combines_the_terms_with_their_weights():
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(4, 1, 3, 3, generator=gen)
    recon = torch.rand(4, 1, 3, 3, generator=gen)
    mu, log_var = torch.randn(4, 2, generator=gen), torch.randn(4, 2, generator=gen)
    labels, a = torch.tensor([0, 1, 1, 0]), torch.tensor([[1.0, -0.2], [-0.2, 1.0]])
    terms = avae_loss(recon, x, mu, log_var, labels, a, beta=0.5, gamma=3.0)
    assert terms.total.item() == pytest.approx(
        terms.reconstruction.item() + 0.5 * terms.kl.item() + 3.0 * terms.affinity.item()
    )
    assert terms.reconstruction.item() == pytest.approx(F.mse_loss(recon, x).item())


def test_inconsistent_settings_are_refused_naming_the_setting():
    x = torch.zeros(2, 1, 2, 2)
    mu = torch.zeros(2, 2)
    with pytest.raises(InputError, match="training.gamma"):
        avae_loss(x, x, mu, mu, None, None, beta=1.0, gamma=1.0)
    with pytest.raises(InputError, match="training.beta"):
        avae_loss(x, x, mu, mu, None, None, beta=-1.0, gamma=0.0)
    # gamma 0 without a prior is a plain beta-VAE
    terms = avae_loss(x, x, mu, mu, None, None, beta=1.0, gamma=0.0)
    assert terms.affinity.item() == 0.0
