"""The step-closure contract (train.loop): term subsets, forward-only evaluation, accumulation, clipping and the
non-finite guard, driven by a fake two-pass optimizer (SAM-like) and a fake forward-only one (zeroth-order-like)
through the real loop. The objective is a quadratic with closed-form gradients:
forget = a * |w|^2 * s, retain = b * sum(w) * s, where s is the micro-batch's scale."""

import pytest
import torch

from unlearn_cli.data.encoding import EncodedQA
from unlearn_cli.errors import NonFiniteLossError
from unlearn_cli.train.batches import BatchStream
from unlearn_cli.train.loop import StepClosure, train
from unlearn_cli.train.settings import TrainSettings

A, B = 0.5, 2.0
CPU = torch.device("cpu")


class Quadratic(torch.nn.Module):
    def __init__(self, w):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(w))


def objective(model, batch):
    s = batch["scale"]
    grad_on = torch.is_grad_enabled()
    forget = A * (model.w ** 2).sum() * s
    retain = B * model.w.sum() * s
    return {"forget": forget, "retain": retain}, {"grad_enabled": torch.tensor(float(grad_on))}


def closure_for(model, scales=(1.0,), max_grad_norm=None):
    s = TrainSettings(lr=0.1, precision="fp32", max_grad_norm=max_grad_norm, grad_accum=len(scales))
    micro = [{"scale": torch.tensor(x)} for x in scales]
    return StepClosure(model, objective, micro, s, [model.w], stage="test", step=3, device=CPU)


def test_all_terms_with_backward_by_default():
    m = Quadratic([1.0, -2.0])
    loss = closure_for(m)()
    assert float(loss) == pytest.approx(A * 5.0 + B * -1.0)
    assert m.w.grad.tolist() == pytest.approx([2 * A * 1.0 + B, 2 * A * -2.0 + B])


def test_a_term_subset_backpropagates_only_those_terms():
    m = Quadratic([1.0, -2.0])
    c = closure_for(m)
    assert float(c(terms=["forget"])) == pytest.approx(A * 5.0)
    assert m.w.grad.tolist() == pytest.approx([2 * A * 1.0, 2 * A * -2.0])
    assert c.term_names == ["forget", "retain"]
    with pytest.raises(ValueError, match="loss term 'kl'"):
        c(terms=["kl"])


def test_forward_only_touches_no_gradient_and_builds_no_graph():
    m = Quadratic([1.0, -2.0])
    sentinel = torch.tensor([7.0, 7.0])
    m.w.grad = sentinel.clone()
    c = closure_for(m)
    loss = c(backward=False)
    assert float(loss) == pytest.approx(A * 5.0 + B * -1.0) and loss.dtype == torch.float32
    assert not loss.requires_grad and float(c.logs["grad_enabled"]) == 0.0
    assert torch.equal(m.w.grad, sentinel)


def test_accumulation_averages_micro_batches_in_loss_and_gradient():
    m = Quadratic([1.0, -2.0])
    loss = closure_for(m, scales=(1.0, 3.0))()
    assert float(loss) == pytest.approx((A * 5.0 + B * -1.0) * 2.0)  # mean scale 2
    assert m.w.grad.tolist() == pytest.approx([(2 * A * 1.0 + B) * 2.0, (2 * A * -2.0 + B) * 2.0])


def test_clipping_bounds_the_gradient_and_logs_the_norm_before_clipping():
    m = Quadratic([1.0, -2.0])
    c = closure_for(m, max_grad_norm=0.5)
    c()
    raw = torch.tensor([2 * A * 1.0 + B, 2 * A * -2.0 + B])
    assert float(c.logs["grad_norm"]) == pytest.approx(float(raw.norm()))
    assert float(m.w.grad.norm()) == pytest.approx(0.5, rel=1e-4)


def test_a_non_finite_loss_stops_before_any_gradient():
    m = Quadratic([1.0, float("nan")])
    with pytest.raises(NonFiniteLossError, match="non-finite loss at test step 3"):
        closure_for(m)()
    assert m.w.grad is None


class TwoPass(torch.optim.Optimizer):
    """SAM-shaped: gradient of the forget term alone, then of everything, at the same weights."""

    def __init__(self, params, lr):
        super().__init__(params, {"lr": lr})
        self.seen = []

    @torch.no_grad()
    def step(self, closure):
        (p,) = self.param_groups[0]["params"]
        forget = closure(terms=["forget"])
        g_forget = p.grad.clone()
        total = closure()
        self.seen.append((float(forget), g_forget, p.grad.clone(), p.detach().clone()))
        p.add_(p.grad, alpha=-self.param_groups[0]["lr"])
        return total


class ForwardOnly(torch.optim.Optimizer):
    """Zeroth-order-shaped: a two-point estimate along a seeded direction, forward passes only."""

    def __init__(self, params, lr, mu=1e-3):
        super().__init__(params, {"lr": lr})
        self.mu, self.gen = mu, torch.Generator().manual_seed(0)

    @torch.no_grad()
    def step(self, closure):
        (p,) = self.param_groups[0]["params"]
        u = torch.randn(p.shape, generator=self.gen)
        p.add_(u, alpha=self.mu)
        plus = closure(backward=False)
        p.add_(u, alpha=-2 * self.mu)
        minus = closure(backward=False)
        p.add_(u, alpha=self.mu)
        assert p.grad is None
        p.add_(u, alpha=-self.param_groups[0]["lr"] * float(plus - minus) / (2 * self.mu))
        return (plus + minus) / 2


def _stream():
    rows = EncodedQA([[1]] * 4, [[2]] * 4)
    return BatchStream({"forget": rows}, {"forget": 2}, 0, seed=0)


def _scaled(model, batch):
    return objective(model, {"scale": torch.tensor(1.0)})


def test_the_loop_drives_a_two_pass_optimizer():
    m = Quadratic([1.0, -2.0])
    opt = TwoPass(m.parameters(), lr=0.1)
    logged = []
    train(m, _scaled, _stream(), opt, TrainSettings(lr=0.1, precision="fp32", max_grad_norm=None), 3,
          stage="test", log=lambda stage, step, v: logged.append(v), device=CPU)
    assert len(opt.seen) == 3 and len(logged) == 3
    for forget, g_forget, g_total, w in opt.seen:
        assert forget == pytest.approx(float(A * (w ** 2).sum()))
        assert torch.allclose(g_forget, 2 * A * w) and torch.allclose(g_total, 2 * A * w + B)
    assert logged[-1]["loss"] == pytest.approx(float(A * (opt.seen[-1][3] ** 2).sum() + B * opt.seen[-1][3].sum()))


def test_the_loop_drives_a_forward_only_optimizer():
    m = Quadratic([1.0, -2.0])
    opt = ForwardOnly(m.parameters(), lr=0.05)
    start = A * 5.0 + B * -1.0
    last = train(m, _scaled, _stream(), opt, TrainSettings(lr=0.05, precision="fp32", max_grad_norm=1.0), 60,
                 stage="test", log=lambda *a: None, device=CPU)
    assert m.w.grad is None  # never a backward pass, so never a gradient (nor clipping)
    assert "grad_norm" not in last and last["loss"] < start - 1.0
