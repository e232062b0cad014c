"""models/layers.py, RMU, Adaptive RMU and representation rerouting on a tiny Llama."""

import pytest
import torch

from _method_fixtures import Harness, changed, snapshot, tiny_model
from unlearn_cli.components import make
from unlearn_cli.models import layers as hooks
from unlearn_cli.errors import UserError
from unlearn_cli.losses import masked_mse
from unlearn_cli.methods.adaptive_rmu import AdaptiveRMU
from unlearn_cli.methods.rmu import RMU
from unlearn_cli.methods.rr import RepresentationRerouting
from unlearn_cli.registry import METHODS


def test_decoder_layers_and_capture_match_hidden_states():
    model = tiny_model()
    assert len(hooks.decoder_layers(model)) == 3
    ids = torch.tensor([[5, 6, 7, 8], [9, 10, 11, 0]])
    batch = {"input_ids": ids, "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])}
    with torch.no_grad():
        ref = model(**batch, output_hidden_states=True).hidden_states
        counts = [len(layer._forward_hooks) for layer in hooks.decoder_layers(model)]
        got = hooks.hidden_states(model, batch, [0, 1], grad=False)
        with hooks.capture(model, [2]) as out:
            model(**batch)
    torch.testing.assert_close(got[0], ref[1])
    torch.testing.assert_close(got[1], ref[2])
    assert out[2].shape == (2, 4, 64)
    # our hooks are removed afterwards (transformers keeps its own output-capturing hooks)
    assert [len(layer._forward_hooks) for layer in hooks.decoder_layers(model)] == counts


def test_decoder_layers_rejects_other_models():
    with pytest.raises(UserError, match="model.model.layers"):
        hooks.decoder_layers(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("bad", [3, 17])
def test_out_of_range_layer_is_one_line_user_error(bad):
    model = tiny_model()
    method = RMU(layer=bad, trainable_layers=[0])
    with pytest.raises(UserError) as err:
        method.setup(model, None)
    msg = str(err.value)
    assert "\n" not in msg and f"method.layer={bad}" in msg and "0..2" in msg


def test_bad_trainable_layer_and_param_name():
    with pytest.raises(UserError, match=r"method.trainable_layers=5 .*0..2"):
        RMU(layer=1, trainable_layers=[0, 5]).setup(tiny_model(), None)
    with pytest.raises(UserError, match="param_name='mlp.nope'"):
        RMU(layer=1, trainable_layers=[1], param_name="mlp.nope").setup(tiny_model(), None)
    with pytest.raises(UserError, match=r"^method.layer=-1: must be >= 0 for method 'rmu'$"):
        make(METHODS, {"name": "rmu", "layer": -1}, "method")
    with pytest.raises(UserError, match=r"method.layers=9 .*0..2"):
        RepresentationRerouting(layers=[1, 9]).setup(tiny_model(), None)


def test_rmu_control_vector_is_seeded_uniform_unit():
    a, b = RMU(layer=1), RMU(layer=1)
    torch.manual_seed(3)
    a.setup(tiny_model(), None)
    torch.manual_seed(3)
    b.setup(tiny_model(), None)
    torch.testing.assert_close(a.control, b.control)
    assert a.control.norm().item() == pytest.approx(1.0, abs=1e-6)
    assert (a.control >= 0).all()


def test_rmu_trains_only_chosen_layers_and_moves_forget_states_to_target():
    method = RMU(layer=2, trainable_layers=[1, 2], steering_coeff=5.0, alpha=10.0)
    h = Harness(method, lr=1e-2)
    forget = h.full("forget")

    def distance():
        with torch.no_grad():
            states = hooks.hidden_states(h.model, forget, [2], grad=False)[2]
        return float(masked_mse(states, method.steering_coeff * method.control))

    before, start = snapshot(h.model), distance()
    h.run(8)
    assert changed(h.model, before) == {"model.layers.1.mlp.down_proj.weight", "model.layers.2.mlp.down_proj.weight"}
    assert distance() < 0.9 * start


def test_rmu_default_trainable_layers():
    assert RMU(layer=7).trainable_layers == [5, 6, 7]
    assert RMU(layer=1).trainable_layers == [0, 1]


def test_adaptive_rmu_coefficient_is_beta_times_reference_norm():
    method = AdaptiveRMU(layer=1, trainable_layers=[1], beta_a=3.0, alpha=10.0)
    h = Harness(method)
    batch = h.batch()["forget"]
    coeff = method.coefficients(batch, h.reference)
    with torch.no_grad():
        states = h.reference.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                   output_hidden_states=True).hidden_states[2]
    for row in range(len(coeff)):
        n = int(batch["attention_mask"][row].sum())
        expected = 3.0 * states[row, :n].norm(dim=-1).mean()
        assert coeff[row].item() == pytest.approx(expected.item(), rel=1e-5)
    assert set(method._coeff) == set(batch["index"].tolist())  # cached per example


def test_adaptive_rmu_training_reduces_forget_loss_and_keeps_other_weights():
    method = AdaptiveRMU(layer=1, trainable_layers=[1], beta_a=2.0, alpha=10.0)
    h = Harness(method)
    before = snapshot(h.model)
    batch = h.batch()
    first, _ = h.step(batch)
    for _ in range(6):
        h.step(batch)
    after, _ = h.step(batch)
    assert after < first
    assert changed(h.model, before) == {"model.layers.1.mlp.down_proj.weight"}


def test_rr_schedule_counts_loss_calls():
    method = RepresentationRerouting(layers=[1], alpha=10.0, schedule_steps=4, trainable_layers=[1])
    assert method.coefficients(0) == (10.0, 0.0)
    assert method.coefficients(4) == (5.0, 5.0)
    h = Harness(method)
    _, logs0 = h.step()
    _, logs1 = h.step()
    assert float(logs0["c_s"]) == 10.0 and float(logs1["c_s"]) == pytest.approx(10.0 * (1 - 1 / 8))
    assert float(logs1["c_r"]) == pytest.approx(10.0 / 8)
    assert method.calls == 2


def test_rr_reroutes_forget_states_and_uses_hidden_cache():
    method = RepresentationRerouting(layers=[1, 2], alpha=10.0, schedule_steps=100, trainable_layers=[1, 2])
    h = Harness(method, lr=1e-2)
    batch = h.batch()
    before = snapshot(h.model)
    first = float(h.step(batch)[1]["forget_loss"])
    for _ in range(8):
        h.step(batch)
    last = float(h.step(batch)[1]["forget_loss"])
    assert last < 0.9 * first
    assert changed(h.model, before) == {"model.layers.1.mlp.down_proj.weight", "model.layers.2.mlp.down_proj.weight"}
    assert set(h.reference._hidden["forget"][1]) == set(batch["forget"]["index"].tolist())


def test_rr_schedule_holds_past_its_length():
    method = RepresentationRerouting(layers=[1], alpha=10.0, schedule_steps=4)
    assert method.coefficients(4) == method.coefficients(9) == (5.0, 5.0)  # c_s never turns negative
