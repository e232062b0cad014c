"""SalUn mask: global top-k selection, gradient masking, restore-to-theta_0 and optimizer-state reset."""

import pytest
import torch

from _method_fixtures import Harness, snapshot
from unlearn_cli.errors import UserError
from unlearn_cli.methods.ga import GradientAscent
from unlearn_cli.train.loop import sum_terms
from unlearn_cli.train.plugins.salun import (SaliencyMask, accumulate_gradients, compute_mask, mask_from_scores,
                                             mask_gradients)


def test_mask_from_scores_keeps_global_top_fraction():
    scores = {"a": torch.tensor([[0.1, 5.0], [0.3, 0.2]]), "b": torch.tensor([4.0, 0.05, 3.0, 0.0])}
    mask = mask_from_scores(scores, 0.25)  # 8 weights -> keep 2: 5.0 and 4.0
    assert mask["a"].tolist() == [[False, True], [False, False]]
    assert mask["b"].tolist() == [True, False, False, False]
    half = mask_from_scores(scores, 0.5)  # 5, 4, 3, 0.3
    assert int(sum(m.sum() for m in half.values())) == 4 and half["a"][1, 0] and half["b"][2]
    assert all(m.all() for m in mask_from_scores(scores, 1.0).values())


def test_bisection_path_matches_exact_without_ties():
    g = torch.Generator().manual_seed(0)
    scores = {"x": torch.rand(50, generator=g), "y": torch.rand(7, 9, generator=g)}
    exact = mask_from_scores(scores, 0.3)
    approx = mask_from_scores(scores, 0.3, exact_limit=0)
    for n in scores:
        assert torch.equal(exact[n], approx[n])


def test_exact_count_with_many_zero_scores():
    scores = {"z": torch.zeros(10), "v": torch.tensor([1.0, 2.0])}
    mask = mask_from_scores(scores, 0.5)  # keep 6 of 12 although 10 are tied at zero
    assert int(mask["z"].sum() + mask["v"].sum()) == 6 and mask["v"].all()


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5])
def test_bad_sparsity(bad):
    with pytest.raises(UserError, match="sparsity"):
        mask_from_scores({"a": torch.ones(3)}, bad)


def _ga_setup():
    method = GradientAscent()
    h = Harness(method)
    batches = [h.batch() for _ in range(2)]
    return method, h, batches


def test_compute_mask_uses_accumulated_gradient_magnitude():
    method, h, batches = _ga_setup()
    loss_fn = lambda m, b: sum_terms(method.loss(m, b)[0])
    grads = accumulate_gradients(h.model, loss_fn, batches)
    assert all(p.grad is None for p in h.model.parameters())
    # independent check of the accumulation: sum of per-batch gradients
    manual = {n: torch.zeros_like(p) for n, p in h.model.named_parameters()}
    for b in batches:
        h.model.zero_grad(set_to_none=True)
        sum_terms(method.loss(h.model, b)[0]).backward()
        for n, p in h.model.named_parameters():
            manual[n] += p.grad
    h.model.zero_grad(set_to_none=True)
    for n in manual:
        torch.testing.assert_close(grads[n], manual[n], rtol=1e-4, atol=1e-7)
    mask = compute_mask(h.model, loss_fn, batches, 0.5)
    total = sum(m.numel() for m in mask.values())
    assert int(sum(m.sum() for m in mask.values())) == round(0.5 * total)
    flat_kept = torch.cat([grads[n].abs()[mask[n]] for n in mask])
    flat_dropped = torch.cat([grads[n].abs()[~mask[n]] for n in mask])
    assert flat_kept.min() >= flat_dropped.max()


def test_mask_gradients_zeroes_masked_coordinates():
    p = torch.nn.Linear(3, 2, bias=False)
    p.weight.grad = torch.ones(2, 3)
    mask = {"weight": torch.tensor([[True, False, True], [False, False, True]])}
    mask_gradients(p, mask)
    assert p.weight.grad.tolist() == [[1, 0, 1], [0, 0, 1]]


@pytest.mark.parametrize("optim", ["adamw", "sgd"])
def test_training_with_mask_only_moves_salient_weights(optim):
    method, h, batches = _ga_setup()
    mask = compute_mask(h.model, lambda m, b: sum_terms(method.loss(m, b)[0]), batches, 0.3)
    theta0 = snapshot(h.model)
    if optim == "sgd":
        h.optimizer = torch.optim.SGD(h.model.parameters(), lr=1e-2, momentum=0.9, weight_decay=0.1)
    else:
        h.optimizer = torch.optim.AdamW(h.model.parameters(), lr=1e-3, weight_decay=0.1)
    sal = SaliencyMask(h.model, mask).install()
    assert sal.kept_fraction() == pytest.approx(0.3, abs=1e-4)
    h.run(4, after_step=lambda: sal.after_step(h.optimizer))
    sal.remove()
    moved = 0
    for n, p in h.model.named_parameters():
        frozen = ~mask[n]
        assert torch.equal(p.detach()[frozen], theta0[n][frozen]), n
        moved += int((p.detach()[mask[n]] != theta0[n][mask[n]]).sum())
        state = h.optimizer.state[p]
        for key in ("exp_avg", "exp_avg_sq", "momentum_buffer"):
            if key in state:
                assert not state[key][frozen].any(), (n, key)
    assert moved > 0.5 * sum(int(m.sum()) for m in mask.values())


def test_gradient_hooks_mask_before_clipping():
    method, h, batches = _ga_setup()
    mask = compute_mask(h.model, lambda m, b: sum_terms(method.loss(m, b)[0]), batches, 0.1)
    sal = SaliencyMask(h.model, mask).install()
    sum_terms(method.loss(h.model, batches[0])[0]).backward()
    for n, p in h.model.named_parameters():
        assert not p.grad[~mask[n]].any()
    sal.remove()
    h.model.zero_grad(set_to_none=True)
    sum_terms(method.loss(h.model, batches[0])[0]).backward()
    assert any(p.grad[~mask[n]].any() for n, p in h.model.named_parameters())
