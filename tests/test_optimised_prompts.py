"""Optimised input attacks (soft prompt, GCG): the embedding override scores exactly what inserted token ids score
(answer rows, left-padded generation, rows it does not target), and each attack's optimisation lowers the forget
answers' loss on an unlearned tiny model while leaving its weights as they were."""

from __future__ import annotations

import functools

import pytest
import torch

from _method_fixtures import CPU, data_and_tokenizer, encode, snapshot, tiny_model
from unlearn_cli.attacks.context import AttackContext
from unlearn_cli.attacks._adversarial import vocabulary_tokens
from unlearn_cli.components import make
from unlearn_cli.data.encoding import EncodedQA, bos_ids
from unlearn_cli.eval.decode import generate
from unlearn_cli.models.adversarial_tokens import EmbeddingOverride, insert_after_bos, placeholder_id
from unlearn_cli.models.forward import answer_forward
from unlearn_cli.optimizers.adamw import AdamW
from unlearn_cli.registry import ATTACKS
from unlearn_cli.train.batches import BatchStream
from unlearn_cli.train.loop import train
from unlearn_cli.train.settings import TrainSettings
from unlearn_cli.train.sft import finetune

OPTIMISED = [name for name in ATTACKS.names() if ATTACKS.get(name).optimises_prompt]


def _nll(model, rows: EncodedQA, pad: int) -> float:
    with torch.no_grad():
        return float(answer_forward(model, rows.batch(range(len(rows)), pad)).mean_nll())


@functools.lru_cache(maxsize=1)
def _unlearned_state():
    """A tiny model that learned every fact, then forgot the forget set by gradient difference (15 steps)."""
    data, tok = data_and_tokenizer()
    enc = {k: encode(v) for k, v in data.train.items()}
    model = tiny_model()
    finetune(model, {"train": enc["forget"].concat(enc["retain"])}, TrainSettings(lr=3e-3, steps=150, batch_size=16,
             precision="fp32"), AdamW(), seed=0, pad_id=tok.pad_token_id, stage="learn", log=lambda *a: None,
             device=CPU)

    def graddiff(m, b):
        return {"forget": -answer_forward(m, b["forget"]).mean_nll(), "retain": answer_forward(m, b["retain"]).mean_nll()}, {}
    stream = BatchStream({"forget": enc["forget"], "retain": enc["retain"]}, {"forget": 8, "retain": 8},
                         tok.pad_token_id, 0)
    train(model, graddiff, stream, AdamW().build(list(model.parameters()), 1e-3),
          TrainSettings(lr=1e-3, steps=15, batch_size=8, precision="fp32"), 15, stage="unlearn",
          log=lambda *a: None, device=CPU)
    return {k: v.clone() for k, v in model.state_dict().items()}


def _unlearned():
    model = tiny_model()
    model.load_state_dict(_unlearned_state())
    return model.eval()


def test_the_embedding_override_scores_exactly_what_the_inserted_tokens_score():
    _, tok = data_and_tokenizer()
    data, _ = data_and_tokenizer()
    model, bos, ph = _unlearned(), bos_ids(tok), placeholder_id(tok)
    rows = encode(data.train["forget"][:6])
    ids = vocabulary_tokens(tok, len(tok), 5, seed=1)
    assert not set(ids.tolist()) & set(tok.all_special_ids)
    real = EncodedQA([insert_after_bos(p, bos, ids.tolist()) for p in rows.prompts], rows.answers)
    marked = EncodedQA([insert_after_bos(p, bos, [ph] * 5) for p in rows.prompts], rows.answers)
    assert real.prompts[0][:1] == bos and real.prompts[0][1:6] == ids.tolist()
    with torch.no_grad():
        vectors = model.get_input_embeddings()(ids)
    with EmbeddingOverride(model, vectors, ph, bos):
        assert _nll(model, marked, tok.pad_token_id) == pytest.approx(_nll(model, real, tok.pad_token_id), abs=1e-5)
        untouched = _nll(model, rows, tok.pad_token_id)
    assert untouched == _nll(model, rows, tok.pad_token_id)  # rows without placeholders pass unchanged
    with EmbeddingOverride(model, vectors, ph, bos):
        # generation: left-padded batches of different lengths, through generate()'s prefill and cache
        overridden = generate(model, tok, [marked.prompts[0], marked.prompts[3] + [ph], rows.prompts[2]], 6, 8,
                              torch.no_grad)
    plain = generate(model, tok, [real.prompts[0], real.prompts[3] + [ph], rows.prompts[2]], 6, 8, torch.no_grad)
    assert len({len(marked.prompts[0]), len(marked.prompts[3]) + 1, len(rows.prompts[2])}) > 1  # really left-padded
    assert overridden == plain
    with EmbeddingOverride(model, torch.zeros_like(vectors), ph, bos):  # the vectors are what is scored
        assert _nll(model, marked, tok.pad_token_id) != pytest.approx(_nll(model, real, tok.pad_token_id), abs=1e-2)


@pytest.mark.parametrize("name", OPTIMISED)
def test_each_optimised_prompt_attack_lowers_the_forget_loss_and_keeps_the_weights(name):
    data, tok = data_and_tokenizer()
    enc = {k: encode(v) for k, v in data.train.items()}
    model = _unlearned()
    before, flags = snapshot(model), [p.requires_grad for p in model.parameters()]
    logged = []
    ctx = AttackContext(enc, tok, 0, tok.pad_token_id, CPU, lambda stage, step, v: logged.append(v), name,
                        forget_splits=("forget", "forget_paraphrase"))
    budget = {"gcg": {"steps": 20}, "soft_prompt": {"steps": 100}}.get(name, {})
    attack = make(ATTACKS, {"name": name, **budget}, f"attack.{name}")
    out, view = attack.apply(ctx, model)
    assert out is model and all(torch.equal(p, before[k]) for k, p in model.named_parameters())
    assert [p.requires_grad for p in model.parameters()] == flags
    assert view.applies_to("forget") and view.applies_to("forget_paraphrase") and not view.applies_to("retain")
    bos = bos_ids(tok)
    forget = enc["forget"]
    attacked = EncodedQA(view.token_rows(forget.prompts, bos), forget.answers)
    start = vocabulary_tokens(tok, len(tok), len(view.tokens), 0 + attack.seed_offset).tolist()
    initial = EncodedQA([insert_after_bos(p, bos, start) for p in forget.prompts], forget.answers)
    override = (EmbeddingOverride(model, view.embeddings, view.placeholder, bos) if view.embeddings is not None
                else torch.no_grad())
    with override:
        loss = _nll(model, attacked, tok.pad_token_id)
    clean, init = _nll(model, forget, tok.pad_token_id), _nll(model, initial, tok.pad_token_id)
    assert loss < 0.7 * clean and loss < 0.7 * init, (name, clean, init, loss)
    assert logged and all("loss" in v for v in logged)
