"""Optimizers: every registered one through the real loop (closure contract, loss decreases, state round trip),
and each update rule against its hand computation: sign moves of exactly lr, N-bit levels, the zeroth-order
estimate averaging to the true gradient of a quadratic without a parameter-sized copy, SophiaG's clipped step."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from unlearn_cli.components import make
from unlearn_cli.errors import UserError
from unlearn_cli.optimizers import _zo
from unlearn_cli.optimizers._compress import compress
from unlearn_cli.registry import OPTIMIZERS
from unlearn_cli.train.batches import BatchStream
from unlearn_cli.train.loop import StepClosure, train
from unlearn_cli.train.settings import TrainSettings

CPU = torch.device("cpu")
A = torch.tensor([[2.0, 0.5, 0.0], [0.5, 1.0, 0.0], [0.0, 0.0, 3.0]])  # symmetric positive definite
B = torch.tensor([1.0, -2.0, 0.5])


class Quadratic(torch.nn.Module):
    def __init__(self, w=(1.0, -1.5, 2.0)):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(w))


def quadratic(model, batch):
    """forget = 1/2 w^T A w, retain = b^T w (named terms, as a method returns them)."""
    w = model.w
    return {"forget": 0.5 * w @ A @ w, "retain": B @ w}, {}


def true_gradient(w: torch.Tensor) -> torch.Tensor:
    return A @ w + B


def value(w: torch.Tensor) -> float:
    return float(0.5 * w @ A @ w + B @ w)


class _NoData(BatchStream):
    def __init__(self):
        pass

    def __iter__(self):
        while True:
            yield {}


def _closure(model, step=0):
    return StepClosure(model, quadratic, [{}], TrainSettings(lr=0.1, precision="fp32", max_grad_norm=None),
                       [model.w], stage="test", step=step, device=CPU)


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_every_optimizer_lowers_the_objective_through_the_real_loop(name):
    """Each optimizer, with its default settings, drives the loop's closure for 150 steps on the quadratic."""
    model = Quadratic()
    start = value(model.w.detach())
    optimizer = make(OPTIMIZERS, {"name": name}, "optimizer").build([model.w], 0.02)
    settings = TrainSettings(lr=0.02, precision="fp32", max_grad_norm=None)
    last = train(model, quadratic, _NoData(), optimizer, settings, 150, stage="test", log=lambda *a: None,
                 device=CPU)
    end = value(model.w.detach())
    assert math.isfinite(last["loss"]) and end < start - 1.0, (name, start, end)


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_every_optimizer_resumes_from_its_state_dict(name):
    """A checkpointed optimizer continues exactly as the uninterrupted one (resume keeps the numbers; the torch RNG,
    which noisy optimizers draw from, is seeded per step as a restored checkpoint would set it)."""
    spec = make(OPTIMIZERS, {"name": name}, "optimizer")
    a = Quadratic()
    opt_a = spec.build([a.w], 0.01)
    for step in range(3):
        torch.manual_seed(step)
        opt_a.step(_closure(a, step))
    b = Quadratic(a.w.detach().tolist())
    opt_b = spec.build([b.w], 0.01)
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))
    for step in range(3, 6):
        torch.manual_seed(step)
        opt_a.step(_closure(a, step))
        torch.manual_seed(step)
        opt_b.step(_closure(b, step))
    assert b.w.detach().tolist() == a.w.detach().tolist()


def test_compress_is_sign_at_one_bit_and_normalised_levels_above():
    m = torch.tensor([0.3, -0.05, 0.0, -1.2, 0.61])
    assert compress(m, 1).tolist() == [1.0, -1.0, 0.0, -1.0, 1.0]
    # 2 bits: one positive level; m / max|m| = [0.25, -0.0417, 0, -1, 0.508] rounds to [0, -0, 0, -1, 1]
    assert compress(m, 2).tolist() == [0.0, 0.0, 0.0, -1.0, 1.0]
    # 4 bits: 7 levels; round(7 * m / 1.2) / 7
    assert compress(m, 4).tolist() == pytest.approx([2 / 7, 0.0, 0.0, -1.0, 4 / 7])
    assert compress(torch.zeros(3), 4).tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("section", [{"name": "signsgd"}, {"name": "signsgd", "momentum": 0.9},
                                     {"name": "signadam"}])
def test_sign_optimizers_move_each_coordinate_by_exactly_lr(section):
    model = Quadratic((1.0, -1.5, 2.0))
    model.w.data[1] = 0.0
    before = model.w.detach().clone()
    grad = true_gradient(before)
    optimizer = make(OPTIMIZERS, section, "optimizer").build([model.w], 0.125)
    optimizer.step(_closure(model))
    assert (before - model.w.detach()).tolist() == (0.125 * torch.sign(grad)).tolist()


def test_signum_follows_the_sign_of_the_moving_average():
    """Two steps with momentum 0.5: v2 = 0.5 * v1 + 0.5 * g2 with v1 = 0.5 * g1 (zero start)."""
    w = torch.nn.Parameter(torch.tensor([0.0, 0.0]))
    optimizer = make(OPTIMIZERS, {"name": "signsgd", "momentum": 0.5}, "optimizer").build([w], 1.0)
    w.grad = torch.tensor([4.0, -1.0])
    optimizer.step()
    w.grad = torch.tensor([-1.0, 3.0])  # v2 = [1 - 0.5, -0.25 + 1.5] = [0.5, 1.25]
    optimizer.step()
    assert w.detach().tolist() == [-1.0 - 1.0, 1.0 - 1.0]


def test_zeroth_order_estimate_averages_to_the_true_gradient():
    """For a quadratic the two-point difference is exactly u^T g, so E[(u^T g) u] = g with per-coordinate variance
    |g|^2 + g_i^2 (Gaussian u). Over 20000 steps' directions the mean lies within 4 standard errors of g (the
    standard error computed from that closed-form variance: 0.07 for g = (2.25, -3, 6.5))."""
    w = torch.tensor([1.0, -1.5, 2.0])
    params = [w.clone()]
    draws = 20000
    total = torch.zeros(3)
    for step in range(draws):
        est = _zo.estimate(params, lambda: torch.tensor(value(params[0])), mu=1e-2, queries=1, seed=7, step=step)
        total += est.gradient(0)
    assert torch.allclose(params[0], w, atol=1e-5)  # perturbations undone
    g = true_gradient(w)
    stderr = ((g.square().sum() + g.square()) / draws).sqrt()
    assert ((total / draws - g).abs() < 4 * stderr).all(), (total / draws, g, stderr)


def test_zo_sgd_perturbs_in_place_and_keeps_no_parameter_sized_state():
    model = Quadratic()
    theta = model.w.detach().clone()
    ptr = model.w.data_ptr()
    seen = []

    def objective(m, batch):
        seen.append((m.w.data_ptr(), m.w.detach().clone()))
        return quadratic(m, batch)

    optimizer = make(OPTIMIZERS, {"name": "zo_sgd", "mu": 0.01, "queries": 2}, "optimizer").build([model.w], 0.1)
    closure = StepClosure(model, objective, [{}], TrainSettings(lr=0.1, precision="fp32", max_grad_norm=None),
                          [model.w], stage="test", step=0, device=CPU)
    optimizer.step(closure)
    assert len(seen) == 4 and all(p == ptr for p, _ in seen)  # 2 queries x (+mu, -mu), on the weights themselves
    assert model.w.grad is None and not optimizer.state  # forward only; nothing parameter-sized is kept
    expected = theta.clone()
    for q, ((_, plus), (_, minus)) in enumerate(zip(seen[0::2], seen[1::2])):
        u = (plus - minus) / (2 * 0.01)  # the direction, recovered from the two evaluation points
        proj = (value(plus) - value(minus)) / (2 * 0.01)
        expected -= 0.1 * proj * u / 2
    assert model.w.detach().tolist() == pytest.approx(expected.tolist(), abs=1e-5)


def test_sophia_matches_a_hand_computed_step():
    """One step from zero state, betas (0.9, 0.95), rho 0.04, batch_tokens 5120, wd 0.1, lr 0.5:
    m = 0.1 g, h = 0.05 g^2, ratio = min(|m| / (204.8 h + 1e-15), 1), theta <- theta (1 - 0.05) - 0.5 sign(m) ratio."""
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
    g = torch.tensor([0.01, -3.0, 0.0])
    optimizer = make(OPTIMIZERS, {"name": "sophia"}, "optimizer").build([w], 0.5)
    w.grad = g.clone()
    optimizer.step()
    m, h = 0.1 * g, 0.05 * g * g
    ratio = [min(abs(float(m[i])) / (204.8 * float(h[i]) + 1e-15), 1.0) for i in range(3)]
    # coordinate 0: |m| = 1e-3, 204.8 * 5e-6 = 1.024e-3 -> ratio 0.977; coordinate 1: 0.3 / 92.16; coordinate 2: m = 0, no move
    assert ratio[0] == pytest.approx(1e-3 / 1.024e-3) and ratio[1] == pytest.approx(0.3 / (204.8 * 0.45))
    expected = [1.0 * 0.95 - 0.5 * ratio[0], -2.0 * 0.95 + 0.5 * ratio[1], 0.5 * 0.95]
    assert w.detach().tolist() == pytest.approx(expected, rel=1e-6)


def test_sam_is_an_ascent_then_descent_step_with_the_retain_gradient_at_theta():
    """forget = 1/2 (2 w0^2 + w1^2), retain = 0.5 (w0^2 + w1^2); SAM(rho 0.05) around SGD(lr 0.1) from w = (1, -2):
    g1 = (2, -2), eps = 0.05 g1 / |g1|, g_f = grad forget(w + eps), g_r = grad retain(w) = w (not at w + eps)."""
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    model = torch.nn.Module()
    model.w = w

    def objective(m, batch):
        return {"forget": 0.5 * (2 * m.w[0] ** 2 + m.w[1] ** 2), "retain": 0.5 * (m.w ** 2).sum()}, {}

    optimizer = make(OPTIMIZERS, {"name": "sam", "rho": 0.05, "base": {"name": "sgd"}}, "optimizer").build([w], 0.1)
    closure = StepClosure(model, objective, [{}], TrainSettings(lr=0.1, precision="fp32", max_grad_norm=None), [w],
                          stage="test", step=0, device=CPU)
    loss = optimizer.step(closure)
    theta = torch.tensor([1.0, -2.0])
    g1 = torch.tensor([2.0, -2.0])
    eps = 0.05 * g1 / g1.norm()
    g_f = torch.tensor([2.0, 1.0]) * (theta + eps)
    g_r = theta
    expected = theta - 0.1 * (g_f + g_r)
    assert w.detach().tolist() == pytest.approx(expected.tolist(), rel=1e-6)
    assert w.detach().tolist() == pytest.approx([0.692929, -1.596464], abs=1e-6)  # the same, worked by hand
    assert float(loss) == pytest.approx(0.5 * (2 + 4) + 0.5 * 5)  # both terms at theta


def test_sam_without_a_retain_term_steps_on_the_shifted_forget_gradient_alone():
    w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))
    model = torch.nn.Module()
    model.w = w
    optimizer = make(OPTIMIZERS, {"name": "sam", "rho": 0.5, "base": {"name": "sgd"}}, "optimizer").build([w], 1.0)
    closure = StepClosure(model, lambda m, b: ({"forget": 0.5 * (m.w ** 2).sum()}, {}), [{}],
                          TrainSettings(lr=1.0, precision="fp32", max_grad_norm=None), [w], stage="test", step=0,
                          device=CPU)
    optimizer.step(closure)
    shifted = torch.tensor([3.0, 4.0]) * (1 + 0.5 / 5.0)  # g1 = w, |g1| = 5
    assert w.detach().tolist() == pytest.approx((torch.tensor([3.0, 4.0]) - shifted).tolist(), rel=1e-6)


def test_rs_averages_the_forget_gradient_over_gaussian_weight_noise():
    """forget = 1/2 w^T A w, retain = b^T w; RS(sigma 0.3, n 3) around SGD(lr 0.1): g_f = A (theta + mean delta_i)
    with the very draws the optimizer makes (torch's RNG from seed 5), g_r = b."""
    model = Quadratic()
    theta = model.w.detach().clone()
    optimizer = make(OPTIMIZERS, {"name": "rs", "sigma": 0.3, "samples": 3, "base": {"name": "sgd"}},
                     "optimizer").build([model.w], 0.1)
    torch.manual_seed(5)
    optimizer.step(_closure(model))
    torch.manual_seed(5)
    mean_noise = sum(torch.randn(3) * 0.3 for _ in range(3)) / 3
    expected = theta - 0.1 * (A @ (theta + mean_noise) + B)
    assert model.w.detach().tolist() == pytest.approx(expected.tolist(), rel=1e-5)
    assert float(mean_noise.abs().max()) > 0.01  # the noise really moved the forget gradient


def _quartic(model, batch):
    """forget = c * (sum w^4 / 4 + w0 w1 w2) (c from the micro-batch, default 1), retain = b^T w: a forget term whose
    Hessian varies with w, so curvature penalties have a non-zero gradient."""
    w, c = model.w, batch.get("c", 1.0)
    return {"forget": c * ((w ** 4).sum() / 4 + w[0] * w[1] * w[2]), "retain": B @ w}, {}


def _forget_grad(w: torch.Tensor) -> torch.Tensor:
    return w ** 3 + torch.stack([w[1] * w[2], w[0] * w[2], w[0] * w[1]])


def _fd_gradient(f, w: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """Central finite differences of the scalar ``f`` at ``w`` (float64)."""
    out = torch.zeros_like(w)
    for i in range(len(w)):
        e = torch.zeros_like(w)
        e[i] = eps
        out[i] = (f(w + e) - f(w - e)) / (2 * eps)
    return out


def _one_sgd_step(section, objective, micro, w0=(0.8, -0.6, 1.1)):
    """One step of ``section`` around SGD at lr 1 from ``w0``: returns (theta - theta', logged values)."""
    model = Quadratic(w0)
    theta = model.w.detach().clone()
    optimizer = make(OPTIMIZERS, {**section, "base": {"name": "sgd"}}, "optimizer").build([model.w], 1.0)
    closure = StepClosure(model, objective, micro, TrainSettings(lr=1.0, precision="fp32", max_grad_norm=None,
                                                                 grad_accum=len(micro)), [model.w], stage="test",
                          step=0, device=CPU)
    loss = optimizer.step(closure)
    return (theta - model.w.detach()).double(), theta.double(), closure.logs, loss


def test_gp_penalty_gradient_is_real_double_backprop_checked_by_finite_differences():
    """GP(rho 0.7) around SGD(lr 1), two micro-batches weighting the forget term by 1 and 3 (accumulated: the step's
    forget gradient is 2 grad f): the update is grad(2 f + rho ||2 grad f||) + b, the penalty's part checked against
    central differences of rho ||2 grad f|| and non-zero."""
    rho = 0.7
    delta, theta, logs, loss = _one_sgd_step({"name": "gp", "rho": rho}, _quartic, [{"c": 1.0}, {"c": 3.0}])
    penalty = _fd_gradient(lambda w: rho * (2 * _forget_grad(w)).norm(), theta)
    assert float(penalty.norm()) > 0.1
    expected = 2 * _forget_grad(theta) + penalty + B.double()
    assert delta.tolist() == pytest.approx(expected.tolist(), rel=1e-4, abs=1e-6)
    assert float(logs["gp_penalty"]) == pytest.approx(float(rho * (2 * _forget_grad(theta)).norm()), rel=1e-5)
    f = float((theta ** 4).sum() / 4 + theta.prod())
    assert float(loss) == pytest.approx(2 * f + float(logs["gp_penalty"]) + float(B.double() @ theta), rel=1e-5)


def test_cr_penalty_gradient_flows_through_both_gradients_checked_by_finite_differences():
    """CR(rho 0.5, h 0.1) around SGD(lr 1): with v = grad f(theta) / |grad f(theta)| held fixed, the update is
    grad f + b + grad_w [rho ||grad f(w + h v) - grad f(w)||] at theta, the last part by central differences."""
    rho, h = 0.5, 0.1
    delta, theta, logs, loss = _one_sgd_step({"name": "cr", "rho": rho, "h": h}, _quartic, [{}])
    v = _forget_grad(theta) / _forget_grad(theta).norm()
    penalty_value = lambda w: rho * (_forget_grad(w + h * v) - _forget_grad(w)).norm()  # noqa: E731
    penalty = _fd_gradient(penalty_value, theta)
    assert float(penalty.norm()) > 0.05
    expected = _forget_grad(theta) + B.double() + penalty
    assert delta.tolist() == pytest.approx(expected.tolist(), rel=1e-4, abs=1e-6)
    assert float(logs["cr_penalty"]) == pytest.approx(float(penalty_value(theta)), rel=1e-5)
    f = float((theta ** 4).sum() / 4 + theta.prod())
    assert float(loss) == pytest.approx(f + float(B.double() @ theta) + float(penalty_value(theta)), rel=1e-5)


def test_cr_penalty_has_no_gradient_on_a_quadratic():
    """On a quadratic the finite difference A (h v) does not depend on theta: CR's step is the plain step."""
    delta, theta, logs, _ = _one_sgd_step({"name": "cr", "rho": 5.0, "h": 0.1}, quadratic, [{}])
    assert float(logs["cr_penalty"]) > 0.1
    assert delta.tolist() == pytest.approx((A.double() @ theta + B.double()).tolist(), abs=1e-5)


def test_wa_is_the_mean_of_its_snapshots_and_becomes_the_weights_at_the_end():
    """WA(start 3, every 2) around SGD for 8 steps averages the weights after updates 3, 5, 7 (1-based); the loop
    loads the average when training ends."""
    plain = Quadratic()
    sgd = make(OPTIMIZERS, {"name": "sgd"}, "optimizer").build([plain.w], 0.05)
    snapshots = []
    for step in range(8):
        sgd.step(_closure(plain, step))
        if step + 1 in (3, 5, 7):
            snapshots.append(plain.w.detach().clone())
    model = Quadratic()
    optimizer = make(OPTIMIZERS, {"name": "wa", "start": 3, "every": 2, "base": {"name": "sgd"}},
                     "optimizer").build([model.w], 0.05)
    last = train(model, quadratic, _NoData(), optimizer, TrainSettings(lr=0.05, precision="fp32", max_grad_norm=None),
                 8, stage="test", log=lambda *a: None, device=CPU)
    assert last["wa_snapshots"] == 3
    assert model.w.detach().tolist() == pytest.approx((sum(snapshots) / 3).tolist(), rel=1e-6)
    assert model.w.detach().tolist() != pytest.approx(plain.w.detach().tolist(), rel=1e-3)


def test_wa_refuses_a_run_shorter_than_its_start():
    spec = make(OPTIMIZERS, {"name": "wa", "start": 40}, "optimizer")
    spec.check_steps(40)
    with pytest.raises(UserError, match=r"^optimizer.start=40: .*\(32 steps\); set optimizer.start <= 32$"):
        spec.check_steps(32)


@pytest.mark.parametrize("wrapper", ["sam", "rs", "gp", "cr"])
def test_gradient_wrappers_refuse_a_zeroth_order_base(wrapper):
    with pytest.raises(UserError, match=f"optimizer '{wrapper}' .* not 'zo_sgd'"):
        make(OPTIMIZERS, {"name": wrapper, "base": {"name": "zo_sgd"}}, "optimizer")


def _phases(section, steps):
    model = Quadratic()
    optimizer = make(OPTIMIZERS, section, "optimizer").build([model.w], 0.05)
    phases = []
    for step in range(steps):
        closure = _closure(model, step)
        optimizer.step(closure)
        phases.append("+".join(k[:2] for k in ("fo_loss", "zo_loss") if k in closure.logs))
    return phases


def test_hybrid_follows_its_schedules():
    assert _phases({"name": "hybrid", "schedule": "alternate"}, 5) == ["fo", "zo", "fo", "zo", "fo"]
    assert _phases({"name": "hybrid", "schedule": "periodic", "period": 2}, 6) == ["fo", "fo", "zo"] * 2
    assert _phases({"name": "hybrid", "schedule": "split"}, 2) == ["fo+zo"] * 2


def test_hybrid_steps_are_the_first_and_zeroth_order_steps_they_claim():
    """alternate with fo=sgd (lr 0.1) and zo=zo_sgd (zo_lr 0.05): step 0 is the SGD step, step 1 a fresh zo_sgd's
    first step; split: theta - 0.05 g_hat(forget alone) - 0.1 grad retain, both at theta."""
    section = {"name": "hybrid", "fo": {"name": "sgd"}, "zo": {"name": "zo_sgd", "mu": 0.01}, "zo_lr": 0.05}
    model = Quadratic()
    hybrid = make(OPTIMIZERS, section, "optimizer").build([model.w], 0.1)
    theta = model.w.detach().clone()
    hybrid.step(_closure(model, 0))
    after_fo = theta - 0.1 * true_gradient(theta)
    assert model.w.detach().tolist() == pytest.approx(after_fo.tolist(), rel=1e-6)
    hybrid.step(_closure(model, 1))
    ref = Quadratic(after_fo.tolist())
    make(OPTIMIZERS, section["zo"], "optimizer").build([ref.w], 0.05).step(_closure(ref))
    assert model.w.detach().tolist() == pytest.approx(ref.w.detach().tolist(), abs=1e-5)  # fp32 difference quotient

    model = Quadratic()
    split = make(OPTIMIZERS, {**section, "schedule": "split"}, "optimizer").build([model.w], 0.1)
    split.step(_closure(model))
    forget_only = Quadratic()
    zo = make(OPTIMIZERS, section["zo"], "optimizer").build([forget_only.w], 0.05)
    zo.step(StepClosure(forget_only, lambda m, b: ({"forget": quadratic(m, b)[0]["forget"]}, {}), [{}],
                        TrainSettings(lr=0.05, precision="fp32", max_grad_norm=None), [forget_only.w], stage="test",
                        step=0, device=CPU))
    expected = forget_only.w.detach() - 0.1 * B
    assert model.w.detach().tolist() == pytest.approx(expected.tolist(), abs=1e-5)


def test_hybrid_split_refuses_a_method_without_other_terms():
    model = Quadratic()
    optimizer = make(OPTIMIZERS, {"name": "hybrid", "schedule": "split"}, "optimizer").build([model.w], 0.1)
    closure = StepClosure(model, lambda m, b: ({"forget": (m.w ** 2).sum()}, {}), [{}],
                          TrainSettings(lr=0.1, precision="fp32", max_grad_norm=None), [model.w], stage="test", step=0,
                          device=CPU)
    with pytest.raises(UserError, match="schedule=split .* has none"):
        optimizer.step(closure)
    assert model.w.detach().tolist() == [1.0, -1.5, 2.0]
