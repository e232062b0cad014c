"""The native decoding loop (``eval.kv_decode``, ``eval.slot_decode``) against ``model.generate`` per length
bucket: the same greedy tokens with rows leaving at EOS and their slots refilled by other buckets' rows, the same
samples for the same seed, for the three architectures the project builds; and its KV cache layers."""

from __future__ import annotations

import contextlib
import functools

import pytest
import torch

from _method_fixtures import data_and_tokenizer, encode
from unlearn_cli.eval import kv_decode, slot_decode
from unlearn_cli.eval.decode import Sampling, generate
from unlearn_cli.models.build import ModelSpec, build_tiny

NULL = contextlib.nullcontext
ARCHS = ["llama", "mistral", "qwen2"]


@functools.lru_cache(maxsize=None)
def _setup(arch: str):
    """A tiny model of ``arch`` trained for a few steps on the QA pairs, so that its greedy answers stop at EOS
    after many different numbers of tokens (a random model repeats one token and never stops)."""
    data, tok = data_and_tokenizer()
    spec = ModelSpec(architecture=arch, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                     intermediate_size=128)
    model = build_tiny(spec, len(tok), tok, seed=1)
    rows = encode(data.qa["forget"] + data.qa["retain"])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    for _ in range(80):
        batch = rows.batch(torch.randint(len(rows), (16,), generator=gen).tolist(), tok.pad_token_id)
        opt.zero_grad()
        model(**batch).loss.backward()
        opt.step()
    return model.eval(), tok, rows.prompts[:36]


@pytest.mark.parametrize("arch", ARCHS)
def test_greedy_tokens_equal_generate_per_bucket_with_rows_leaving_and_slots_refilled(arch, monkeypatch):
    model, tok, prompts = _setup(arch)
    steps = []  # per decode step: the output rows of the slots computed
    real_step = slot_decode.SlotSchedule._step
    monkeypatch.setattr(slot_decode.SlotSchedule, "_step",
                        lambda self, slots, tokens: steps.append(slots.out[:slots.active].tolist())
                        or real_step(self, slots, tokens))
    for batch_size in (4, 7, 8, 12):
        ref = generate(model, tok, prompts, 20, batch_size, NULL, engine="generate")
        got = generate(model, tok, prompts, 20, batch_size, NULL, engine="native")
        assert got == ref
    steps.clear()
    ids = kv_decode.Decoder(model, tok.pad_token_id, tok.eos_token_id, 20, NULL).run([prompts[:18], prompts[18:]], 18)
    lengths = [len(row) for row in ids]
    assert min(lengths) < 20 and len(set(lengths)) > 3  # rows stopped at many different steps
    shared = [rows for rows in steps if min(rows) in range(18) and max(rows) >= 18]
    assert shared  # rows of both buckets decoded in one batch (Mistral's 4096-token window sees everything)
    assert all(len(rows) <= 18 for rows in steps)  # never more rows than the batch size


def test_a_window_shorter_than_prompt_and_answer_decodes_bucket_by_bucket_and_equals_generate(monkeypatch):
    """Mistral with an 8-token sliding window: positions leave the window, so slots (which keep them all) are
    not used; the bucket-by-bucket loop still gives generate's tokens."""
    import copy
    model, tok, prompts = _setup("mistral")
    model = copy.deepcopy(model)
    model.config.sliding_window = 8
    steps = []
    monkeypatch.setattr(slot_decode.SlotSchedule, "_step", lambda self, slots, tokens: steps.append(1))
    ref = generate(model, tok, prompts[:16], 20, 8, NULL, engine="generate")
    assert generate(model, tok, prompts[:16], 20, 8, NULL, engine="native") == ref
    assert not steps
    model.config.sliding_window = 4096
    assert generate(model, tok, prompts[:16], 20, 8, NULL, engine="generate") != ref  # the window mattered


@pytest.mark.parametrize("arch", ARCHS)
def test_samples_equal_generate_for_the_same_seed(arch):
    model, tok, prompts = _setup(arch)
    for sampling in (Sampling(3, temperature=0.7, top_p=0.9, top_k=20), Sampling(2)):
        ref = generate(model, tok, prompts[:10], 12, 8, NULL, sampling=sampling, seed=5, engine="generate")
        got = generate(model, tok, prompts[:10], 12, 8, NULL, sampling=sampling, seed=5, engine="native",
                       sampling_rng="generate")
        assert got == ref
        other = generate(model, tok, prompts[:10], 12, 8, NULL, sampling=sampling, seed=6, engine="native",
                         sampling_rng="generate")
        assert other != got  # the seed decides the samples
        assert all(len(s) == sampling.n for s in got)


@pytest.mark.parametrize("engine,rng", [("native", "per_row"), ("native", "generate"), ("generate", "auto")])
def test_sampling_leaves_the_callers_rng_untouched(engine, rng):
    model, tok, prompts = _setup("llama")
    torch.manual_seed(0)
    expected = torch.rand(1)
    torch.manual_seed(0)
    generate(model, tok, prompts[:6], 8, 4, NULL, sampling=Sampling(2), seed=1, engine=engine, sampling_rng=rng)
    assert torch.equal(torch.rand(1), expected)


def test_the_default_stream_is_per_row_on_the_native_engine_and_generates_own_on_engine_generate():
    """``sampling_rng: auto`` (the default): per-row streams on the native loop, ``model.generate``'s draws
    under ``engine: generate`` (where ``per_row`` is refused); the two streams give different samples."""
    from unlearn_cli.eval.decode import DecodeSettings
    assert DecodeSettings().sampling_rng == "auto"
    assert DecodeSettings(engine="generate").sampling_rng == "auto"  # accepted: auto is generate's stream there
    model, tok, prompts = _setup("llama")
    sampling = Sampling(3, temperature=0.9, top_p=0.95, top_k=20)

    def run(**kw):
        return generate(model, tok, prompts[:10], 12, 8, NULL, sampling=sampling, seed=5, **kw)
    default = run()
    assert default == run(sampling_rng="per_row")
    assert run(engine="generate") == run(engine="generate", sampling_rng="generate") == run(sampling_rng="generate")
    assert default != run(sampling_rng="generate")


def test_growing_layer_writes_in_place_selects_rows_and_refuses_overflow():
    layer = kv_decode.GrowingLayer(room=2)
    k, v = torch.randn(3, 2, 4, 5), torch.randn(3, 2, 4, 5)
    keys, values = layer.update(k, v)
    assert torch.equal(keys, k) and torch.equal(values, v) and layer.get_seq_length() == 4
    k1, v1 = torch.randn(3, 2, 1, 5), torch.randn(3, 2, 1, 5)
    keys, _ = layer.update(k1, v1)
    assert torch.equal(keys, torch.cat([k, k1], 2))
    layer.batch_select_indices(torch.tensor([2, 0]))
    assert torch.equal(layer.keys, torch.cat([k, k1], 2)[[2, 0]])
    assert torch.equal(layer.values, torch.cat([v, v1], 2)[[2, 0]])
    layer.update(k1[:2], v1[:2])
    with pytest.raises(RuntimeError, match="holds 6 positions; 7 were written"):
        layer.update(k1[:2], v1[:2])


def test_slot_layer_writes_each_slot_at_its_own_column_moves_slots_and_zeroes_what_it_reaches():
    layer = slot_decode.SlotLayer(rows=3, limit=70)
    prompt_k, prompt_v = torch.randn(2, 2, 4, 5), torch.randn(2, 2, 4, 5)
    layer.place(torch.tensor([2, 0]), prompt_k, prompt_v)
    assert layer._keys.shape == (3, 2, 70, 5) and layer.zeroed == 4
    assert torch.equal(layer._keys[1, :, :4], torch.zeros(2, 4, 5))  # the empty slot reads zeros, not garbage
    layer.reserve(5)
    layer.at, layer.columns = torch.tensor([4, 0, 2]), torch.arange(5)
    k, v = torch.randn(3, 2, 1, 5), torch.randn(3, 2, 1, 5)
    keys, values = layer.update(k, v)
    assert keys.shape == (3, 2, 5, 5) and layer.get_seq_length() == 4
    assert torch.equal(keys[0, :, :4], prompt_k[1]) and torch.equal(keys[0, :, 4], k[0, :, 0])
    assert torch.equal(keys[2, :, :2], prompt_k[0, :, :2]) and torch.equal(keys[2, :, 2], k[2, :, 0])
    assert torch.equal(keys[2, :, 3], prompt_k[0, :, 3]) and torch.equal(keys[2, :, 4], torch.zeros(2, 5))  # stale, zero
    assert torch.equal(keys[1, :, 1:], torch.zeros(2, 4, 5))
    assert torch.equal(values[1, :, 0], v[1, :, 0])
    layer.move(torch.tensor([2]), torch.tensor([1]), 5)
    assert torch.equal(layer._keys[1, :, :5], layer._keys[2, :, :5])
    layer.reserve(70)
    assert torch.equal(layer._keys[:, :, 5:], torch.zeros(3, 2, 65, 5)) and torch.equal(keys[0, :, :4], prompt_k[1])
    with pytest.raises(RuntimeError, match="holds at most 70 positions; 71 were needed"):
        layer.reserve(71)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_slots_of_different_lengths_attend_to_their_own_tokens(arch):
    """Three prompts of different lengths, prefilled together, aligned at column 0 and decoded one step in
    slots: each row's next logits equal a forward of that prompt and token alone."""
    model, tok, prompts = _setup(arch)
    group = [prompts[0], prompts[1] + prompts[1][1:6], prompts[2][:3]]
    dec = kv_decode.Decoder(model, tok.pad_token_id, None, 8, NULL)
    with torch.no_grad():
        cache, mask, _ = dec.prefill_forward(group, kv_decode.DynamicCache(config=model.config))
        pad = mask.shape[1] - mask.sum(1)
        keys = [slot_decode.aligned(layer.keys, pad) for layer in cache.layers]
        values = [slot_decode.aligned(layer.values, pad) for layer in cache.layers]
        slots = kv_decode.DynamicCache(config=model.config)
        slots.layers = [slot_decode.SlotLayer(4, 64) for _ in slots.layers]
        where = torch.tensor([3, 0, 1])
        for layer, k, v in zip(slots.layers, keys, values):
            layer.place(where, k, v)
        lengths = torch.tensor([len(group[1]), len(group[2]), 1, len(group[0])])  # slot 2 holds nothing real
        nxt = torch.tensor([7, 8, 9, 10])
        width = int(lengths.max()) + 1
        for layer in slots.layers:
            layer.at, layer.columns = lengths, torch.arange(width)
        step_mask = (torch.arange(width)[None] <= lengths[:, None]).long()
        got = dec.logits(input_ids=nxt[:, None], attention_mask=step_mask, position_ids=lengths[:, None],
                         cache=slots)
        for slot, prompt in ((3, group[0]), (0, group[1]), (1, group[2])):
            alone = model(input_ids=torch.tensor([list(prompt) + [int(nxt[slot])]])).logits[0, -1]
            torch.testing.assert_close(got[slot], alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_per_row_samples_do_not_depend_on_batch_size_and_top_k_1_is_greedy(arch):
    model, tok, prompts = _setup(arch)
    sampling = Sampling(3, temperature=0.9, top_p=0.95, top_k=0)
    runs = [generate(model, tok, prompts[:12], 16, bs, NULL, sampling=sampling, seed=5, sampling_rng="per_row")
            for bs in (3, 9, 36)]
    assert runs[0] == runs[1] == runs[2]
    assert len({s for per in runs[0] for s in per}) > 12  # the samples do differ from one another
    assert generate(model, tok, prompts[:12], 16, 9, NULL, sampling=sampling, seed=6,
                    sampling_rng="per_row") != runs[0]
    greedy = generate(model, tok, prompts[:12], 16, 9, NULL)
    top1 = generate(model, tok, prompts[:12], 16, 9, NULL, sampling=Sampling(2, temperature=0.7, top_k=1),
                    seed=5, sampling_rng="per_row")
    assert top1 == [[g[0], g[0]] for g in greedy]


def test_per_row_streams_need_the_native_engine():
    from unlearn_cli.errors import UserError
    from unlearn_cli.eval.decode import DecodeSettings
    with pytest.raises(UserError, match="sampling_rng 'per_row' needs eval.decode.engine 'native'"):
        DecodeSettings(engine="generate", sampling_rng="per_row")


def test_per_row_inverse_cdf_draws_follow_the_warped_distribution():
    """20 000 draws (2 000 rows x 10 steps) from fixed logits: the token frequencies match softmax(logits / T)
    and, with top-k 2, the renormalised two largest (chi-square against the closed form)."""
    from types import SimpleNamespace

    from scipy import stats
    logits = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0, -3.0]]).repeat(2000, 1)
    for top_k, temperature in ((0, 1.5), (2, 1.0)):
        choose = kv_decode.per_row_choice(kv_decode.warpers(temperature, top_k, 1.0))
        rows = SimpleNamespace(streams=kv_decode.row_streams(3, 2000, 1))
        counts = torch.bincount(torch.cat([choose(logits, rows, 0) for _ in range(10)]), minlength=6).double()
        probs = torch.softmax(logits[0] / temperature, -1).double()
        if top_k:
            probs[top_k:] = 0
            probs /= probs.sum()
        support = probs > 0
        assert counts[~support].sum() == 0
        expected = probs[support] * counts.sum()
        assert stats.chisquare(counts[support].numpy(), expected.numpy()).pvalue > 1e-3
