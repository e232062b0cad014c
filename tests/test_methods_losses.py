"""Loss maths of the added methods against values computed independently with math/numpy."""

import math

import numpy as np
import pytest
import torch

from unlearn_cli import losses

# Two sequences of length 3 over a vocabulary of 4; position 0 of each row is the prompt (label -100),
# so positions 0 and 1 predict labels[1] and labels[2]; row 1's last label is padding.
LOGITS = np.array([
    [[1.0, 0.5, -1.0, 0.0], [0.2, 2.0, 0.1, -0.3], [0.0, 0.0, 0.0, 0.0]],
    [[-0.5, 0.3, 1.5, 0.7], [1.1, -0.2, 0.4, 0.9], [0.0, 0.0, 0.0, 0.0]],
])
LABELS = np.array([[-100, 2, 1], [-100, 3, -100]])
REF_LOGITS = np.array([
    [[0.3, 0.1, 0.2, -0.4], [1.0, 0.0, -1.0, 0.5], [0.0, 0.0, 0.0, 0.0]],
    [[0.9, -0.6, 0.2, 0.4], [0.0, 0.3, 0.3, 0.3], [0.0, 0.0, 0.0, 0.0]],
])


def _softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def _supervised():
    """(row, position, gold) triples of supervised next-token predictions."""
    out = []
    for b in range(LABELS.shape[0]):
        for t in range(LABELS.shape[1] - 1):
            y = LABELS[b, t + 1]
            if y != -100:
                out.append((b, t, int(y)))
    return out


def _t(x):
    return torch.tensor(x, dtype=torch.float32)


def _gold_probs():
    return [_softmax(LOGITS[b, t])[y] for b, t, y in _supervised()]


def test_supervised_token_count():
    assert len(_supervised()) == 3


@pytest.mark.parametrize("beta", [0.0, 1.0, 2.5])
def test_wga_loss(beta):
    probs = _gold_probs()
    expected = -np.mean([p ** beta * -math.log(p) for p in probs])
    got = losses.wga_loss(*losses.token_nll(_t(LOGITS), torch.tensor(LABELS)), beta)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_wga_weight_is_detached():
    logits = _t(LOGITS).requires_grad_(True)
    losses.wga_loss(*losses.token_nll(logits, torch.tensor(LABELS)), 1.0).backward()
    # d/dz of -w * nll with w constant = w * (softmax - onehot) / N at each supervised position
    b, t, y = _supervised()[0]
    p = _softmax(LOGITS[b, t])
    onehot = np.eye(4)[y]
    expected = p[y] * (p - onehot) / 3 * -1
    np.testing.assert_allclose(logits.grad[b, t].numpy(), expected, rtol=1e-5, atol=1e-7)


def test_satimp_loss():
    probs = _gold_probs()
    b1, b2 = 5.0, 1.0
    expected = -np.mean([p ** b1 * (1 - p) ** b2 * -math.log(p) for p in probs])
    got = losses.satimp_loss(*losses.token_nll(_t(LOGITS), torch.tensor(LABELS)), b1, b2)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_drop_first_answer_tokens():
    labels = torch.tensor([[-100, 2, 1, 3], [-100, -100, 3, -100]])
    assert losses.drop_first_answer_tokens(labels, 1).tolist() == [[-100, -100, 1, 3], [-100, -100, -100, -100]]
    assert losses.drop_first_answer_tokens(labels, 2).tolist() == [[-100, -100, -100, 3], [-100] * 4]
    assert losses.drop_first_answer_tokens(labels, 0) is labels


def test_unlikelihood_loss():
    expected = np.mean([-math.log(1 - p) for p in _gold_probs()])
    got = losses.unlikelihood_loss(_t(LOGITS), torch.tensor(LABELS))
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_unlikelihood_is_finite_when_gold_is_certain():
    logits = torch.zeros(1, 2, 3)
    logits[0, 0, 1] = 200.0  # p(gold) == 1 in float32
    labels = torch.tensor([[-100, 1]])
    value = losses.unlikelihood_loss(logits, labels)
    assert torch.isfinite(value) and value.item() == pytest.approx(200.0 - math.log(2), rel=1e-4)


def test_unlikelihood_gradient_matches_ce_to_detached_gold_removed_distribution():
    logits = _t(LOGITS).requires_grad_(True)
    losses.unlikelihood_loss(logits, torch.tensor(LABELS)).backward()
    b, t, y = _supervised()[1]
    p = _softmax(LOGITS[b, t])
    q = p.copy()
    q[y] = 0.0
    q /= q.sum()
    np.testing.assert_allclose(logits.grad[b, t].numpy(), (p - q) / 3, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("beta", [0.0, 3.0])
def test_undial_loss(beta):
    values = []
    for b, t, y in _supervised():
        adjusted = REF_LOGITS[b, t].copy()
        adjusted[y] -= beta
        q = _softmax(adjusted)
        logp = np.log(_softmax(LOGITS[b, t]))
        values.append(-(q * logp).sum())
    got = losses.undial_loss(_t(LOGITS), _t(REF_LOGITS), torch.tensor(LABELS), beta)
    assert got.item() == pytest.approx(np.mean(values), rel=1e-5)


def test_dpo_loss():
    nll_w, nll_l = np.array([3.0, 5.0]), np.array([2.0, 4.5])
    ref_w, ref_l = np.array([3.5, 4.0]), np.array([2.5, 4.0])
    beta = 0.5
    delta = (-nll_w + nll_l) - (-ref_w + ref_l)
    expected = np.mean([-(2 / beta) * math.log(1 / (1 + math.exp(-beta * d))) for d in delta])
    got = losses.dpo_loss(_t(nll_w), _t(nll_l), _t(ref_w), _t(ref_l), beta)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_dpo_loss_at_reference_is_2_log2_over_beta():
    x = torch.tensor([1.0, 7.0])
    assert losses.dpo_loss(x, x + 1, x, x + 1, 0.1).item() == pytest.approx(2 / 0.1 * math.log(2), rel=1e-6)


def test_kto_undesirable_loss():
    nll, ref = np.array([4.0, 6.0, 2.0]), np.array([5.0, 5.0, 2.0])
    z0, beta = 0.3, 0.1
    r = ref - nll
    expected = np.mean([1 - 1 / (1 + math.exp(-beta * (z0 - ri))) for ri in r])
    got = losses.kto_undesirable_loss(_t(nll), _t(ref), torch.tensor(z0), beta)
    assert got.item() == pytest.approx(expected, rel=1e-6)


H = np.array([[[1.0, 2.0], [0.0, -1.0], [3.0, 0.5]],
              [[-2.0, 1.0], [0.5, 0.5], [1.0, 1.0]]])
H_REF = np.array([[[0.5, 2.0], [1.0, -1.0], [-3.0, -0.5]],
                  [[2.0, -1.0], [0.5, 0.0], [2.0, 2.0]]])
MASK = np.array([[1, 1, 0], [1, 1, 1]])


def test_masked_mse():
    target = np.array([0.6, 0.8])
    full = np.mean((H - target) ** 2)
    assert losses.masked_mse(_t(H), _t(target)).item() == pytest.approx(full, rel=1e-6)
    sq = [((H[b, t] - H_REF[b, t]) ** 2) for b in range(2) for t in range(3) if MASK[b, t]]
    expected = np.mean(np.concatenate(sq))
    got = losses.masked_mse(_t(H), _t(H_REF), torch.tensor(MASK))
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_relu_cosine_and_l2():
    cos, dist = [], []
    for b in range(2):
        for t in range(3):
            if MASK[b, t]:
                a, c = H[b, t], H_REF[b, t]
                cos.append(max(0.0, a @ c / (np.linalg.norm(a) * np.linalg.norm(c))))
                dist.append(np.linalg.norm(a - c))
    assert losses.relu_cosine(_t(H), _t(H_REF), torch.tensor(MASK)).item() == pytest.approx(np.mean(cos), rel=1e-5)
    assert losses.masked_l2(_t(H), _t(H_REF), torch.tensor(MASK)).item() == pytest.approx(np.mean(dist), rel=1e-5)
    assert min(cos) == 0.0  # the ReLU clipped a negative cosine


def test_mean_position_norm():
    expected = [np.mean([np.linalg.norm(H[b, t]) for t in range(3) if MASK[b, t]]) for b in range(2)]
    got = losses.mean_position_norm(_t(H), torch.tensor(MASK))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)
