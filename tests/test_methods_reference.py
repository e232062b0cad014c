"""Reference additions: theta_0 hidden states on the fly and from the per-example cache."""

import contextlib

import torch

from _method_fixtures import encode, data_and_tokenizer, tiny_model
from unlearn_cli.models.build import frozen_copy
from unlearn_cli.train.reference import Reference


def _reference(cache=True):
    _, tok = data_and_tokenizer()
    return Reference(frozen_copy(tiny_model()), tok.pad_token_id, cache=cache, batch_size=8,
                     autocast=contextlib.nullcontext), tok.pad_token_id


def test_cached_hidden_states_equal_on_the_fly_at_real_positions():
    data, _ = data_and_tokenizer()
    enc = encode(data.train["forget"])
    ref, pad = _reference()
    assert ref.precompute_hidden("forget", enc, [0, 2])
    batch = enc.batch([3, 0, 7], pad)
    cached = ref.split_hidden("forget", batch, [0, 2])
    fresh = ref.hidden(batch, [0, 2])
    m = batch["attention_mask"].bool()
    for i in (0, 2):
        torch.testing.assert_close(cached[i][m], fresh[i][m], rtol=1e-5, atol=1e-5)
        assert not cached[i][~m].any()


def test_hidden_cache_fills_lazily_and_respects_cap():
    data, _ = data_and_tokenizer()
    enc = encode(data.train["forget"])
    ref, pad = _reference()
    ref.split_hidden("forget", enc.batch([1, 2], pad), [1])
    assert set(ref._hidden["forget"][1]) == {1, 2}
    small, _ = _reference()
    small.hidden_cache_bytes = 10
    assert not small.precompute_hidden("forget", enc, [1])
    out = small.split_hidden("forget", enc.batch([1, 2], pad), [1])
    assert out[1].shape[0] == 2 and small._hidden_bytes == 0


def test_cache_off_computes_on_the_fly():
    data, _ = data_and_tokenizer()
    enc = encode(data.train["forget"])
    ref, pad = _reference(cache=False)
    assert not ref.precompute_hidden("forget", enc, [1])
    ref.split_hidden("forget", enc.batch([0], pad), [1])
    assert ref._hidden == {}
