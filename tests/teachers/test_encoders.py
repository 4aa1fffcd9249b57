"""Text encoders: pooling arithmetic, the MiniLM paths, a tiny decoder, errors, and the cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from distillrec.errors import DistillrecError
from distillrec.teachers.cache import default_cache_dir, encode_cached
from distillrec.teachers.encoders import TextEncoder, default_model_path, pool

TITLES = ["Toy Story (1995). Genres: Animation, Children's, Comedy.", "Heat (1995).",
          "GoldenEye (1995). Genres: Action, Adventure, Thriller.", "Babe (1995)."]


# --- pooling on hand-made tensors -------------------------------------------------------

@pytest.fixture
def hidden() -> torch.Tensor:
    return torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)


def test_mean_pooling_averages_only_real_tokens(hidden):
    mask = torch.tensor([[1, 1, 1, 0], [0, 1, 1, 1]])  # right- and left-padded rows
    pooled = pool(hidden, mask, "mean")
    assert torch.allclose(pooled[0], hidden[0, :3].mean(0))
    assert torch.allclose(pooled[1], hidden[1, 1:].mean(0))


def test_cls_and_last_pooling_find_real_tokens_on_either_padding_side(hidden):
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [0, 1, 1, 1]])
    assert torch.equal(pool(hidden, right, "cls"), torch.stack([hidden[0, 0], hidden[1, 0]]))
    assert torch.equal(pool(hidden, left, "cls"), torch.stack([hidden[0, 2], hidden[1, 1]]))
    assert torch.equal(pool(hidden, right, "last"), torch.stack([hidden[0, 1], hidden[1, 3]]))
    assert torch.equal(pool(hidden, left, "last"), torch.stack([hidden[0, 3], hidden[1, 3]]))


def test_unknown_pooling_is_refused(hidden):
    with pytest.raises(DistillrecError, match="unknown pooling 'max'"):
        pool(hidden, torch.ones(2, 4), "max")
    with pytest.raises(DistillrecError, match="unknown pooling"):
        TextEncoder(pooling="max")


# --- the bundled MiniLM -----------------------------------------------------------------

@pytest.fixture(scope="module")
def minilm() -> TextEncoder:
    return TextEncoder(device="cpu")


@pytest.fixture(scope="module")
def minilm_automodel() -> TextEncoder:
    return TextEncoder(pooling="mean", device="cpu")


def test_minilm_through_automodel_matches_sentence_transformers(minilm, minilm_automodel):
    assert minilm.pooling == "sentence-transformers"
    assert (minilm.dim, minilm.num_parameters) == (384, 22_713_216)
    reference = minilm.encode(TITLES, progress=False)
    assert reference.shape == (4, 384) and reference.dtype == torch.float32
    assert torch.allclose(reference.norm(dim=1), torch.ones(4), atol=1e-5)
    # batch_size 3 mixes lengths in one batch and leaves one alone: order must be restored.
    assert torch.allclose(minilm_automodel.encode(TITLES, batch_size=3, progress=False), reference, atol=1e-5)


def test_encoding_is_independent_of_batching_and_order(minilm):
    together = minilm.encode(TITLES, batch_size=64, progress=False)
    reversed_one_by_one = minilm.encode(TITLES[::-1], batch_size=1, progress=False)
    assert torch.allclose(together, reversed_one_by_one.flip(0), atol=1e-5)
    assert minilm.encode([], progress=False).shape == (0, 384)


# --- a tiny decoder, last-token pooling ---------------------------------------------------

@pytest.fixture(scope="module")
def tiny_decoder(tmp_path_factory):
    """A randomly initialised 2-layer GPT-2 with MiniLM's (BERT) tokenizer, built offline.
    The tokenizer is saved with left padding, as many LLM tokenizers are."""
    from transformers import AutoTokenizer, GPT2Config, GPT2Model

    folder = tmp_path_factory.mktemp("tiny-gpt2")
    tokenizer = AutoTokenizer.from_pretrained(str(default_model_path()))
    tokenizer.padding_side = "left"
    tokenizer.save_pretrained(str(folder))
    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=tokenizer.vocab_size,
                        n_positions=64, pad_token_id=tokenizer.pad_token_id)
    GPT2Model(config).save_pretrained(str(folder))
    return folder


def test_last_token_pooling_on_a_decoder_ignores_padding(tiny_decoder):
    encoder = TextEncoder(tiny_decoder, pooling="last", normalize=False, device="cpu")
    assert encoder.dim == 32
    batched = encoder.encode(TITLES, batch_size=4, progress=False)
    alone = torch.cat([encoder.encode([title], progress=False) for title in TITLES])
    # Padded in one batch or not padded at all, each text's vector is its last real token's.
    assert torch.allclose(batched, alone, atol=1e-5)
    mean = TextEncoder(tiny_decoder, pooling="mean", normalize=False, device="cpu")
    assert not torch.allclose(mean.encode(TITLES, progress=False), batched, atol=1e-3)


# --- errors ---------------------------------------------------------------------------------

def test_encoders_of_one_folder_share_its_loaded_model_until_its_files_change(tiny_decoder, tmp_path):
    import shutil

    from transformers import GPT2Model

    folder = tmp_path / "model"
    shutil.copytree(tiny_decoder, folder)
    first = TextEncoder(folder, pooling="last", device="cpu")
    assert TextEncoder(folder, pooling="last", device="cpu")._backend is first._backend  # loaded once
    assert TextEncoder(folder, pooling="mean", device="cpu")._backend is not first._backend
    before = first.encode(TITLES, progress=False)
    model = GPT2Model.from_pretrained(str(folder))
    torch.nn.init.normal_(model.wte.weight, generator=torch.Generator().manual_seed(1))
    model.save_pretrained(str(folder))  # new weights: a new signature, so a fresh load
    changed = TextEncoder(folder, pooling="last", device="cpu")
    assert changed._backend is not first._backend and changed.identity() != first.identity()
    assert not torch.allclose(changed.encode(TITLES, progress=False), before)


def test_missing_model_is_a_clear_error_and_writes_nothing(tmp_path):
    cache_dir = tmp_path / "cache"
    with pytest.raises(DistillrecError, match="model 'no-such-org/no-such-model' not found locally"):
        encode_cached(TextEncoder("no-such-org/no-such-model"), TITLES, cache_dir)
    with pytest.raises(DistillrecError, match="not found locally: give a path"):
        TextEncoder(tmp_path / "absent")
    assert not cache_dir.exists()


def test_folder_that_is_not_a_model_is_a_clear_error(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(DistillrecError, match="no config.json"):
        TextEncoder(tmp_path)
    config_only = tmp_path / "config-only"
    config_only.mkdir()
    shutil.copy(default_model_path() / "config.json", config_only)
    with pytest.raises(DistillrecError, match="no weights"):
        TextEncoder(config_only)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["config-only", "config.json", "notes.txt"]


# --- the cache -------------------------------------------------------------------------------

def test_cache_hit_skips_the_model_and_returns_the_same_vectors(minilm, tmp_path):
    first, info = encode_cached(minilm, TITLES, tmp_path, template="{title}", progress=False)
    assert not info.hit and info.path.exists() and info.path.parent == tmp_path
    encoded = minilm.texts_encoded
    again, info2 = encode_cached(minilm, TITLES, tmp_path, template="{title}", progress=False)
    assert info2.hit and info2.key == info.key
    assert minilm.texts_encoded == encoded  # the model did not run
    assert torch.equal(first, again)


def test_cache_misses_when_template_texts_or_model_change(minilm, minilm_automodel, tmp_path):
    _, base = encode_cached(minilm, TITLES, tmp_path, template="{title}", progress=False)
    _, other_template = encode_cached(minilm, TITLES, tmp_path, template="{title} ({year})", progress=False)
    _, other_text = encode_cached(minilm, TITLES[:-1] + ["Babe (1996)."], tmp_path, template="{title}",
                                  progress=False)
    _, other_model = encode_cached(minilm_automodel, TITLES, tmp_path, template="{title}", progress=False)
    misses = [other_template, other_text, other_model]
    assert not any(info.hit for info in misses)
    assert len({base.key, *(info.key for info in misses)}) == 4
    assert len(list(tmp_path.glob("*.safetensors"))) == 4


def test_corrupt_cache_entry_is_recomputed(minilm, tmp_path):
    reference, info = encode_cached(minilm, TITLES, tmp_path, progress=False)
    info.path.write_bytes(b"truncated")
    recomputed, info2 = encode_cached(minilm, TITLES, tmp_path, progress=False)
    assert not info2.hit
    assert torch.allclose(recomputed, reference, atol=1e-6)
    assert encode_cached(minilm, TITLES, tmp_path, progress=False)[1].hit


def test_identity_follows_the_model_files(tiny_decoder, tmp_path):
    copy = shutil.copytree(tiny_decoder, tmp_path / "copy")
    original = TextEncoder(tiny_decoder, pooling="last", device="cpu").identity()
    same_files = TextEncoder(copy, pooling="last", device="cpu").identity()
    assert same_files["config_sha256"] == original["config_sha256"]
    config = copy / "config.json"
    config.write_text(config.read_text().replace('"n_layer": 2', '"n_layer": 1'))
    changed = TextEncoder(copy, pooling="last", device="cpu").identity()
    assert changed["config_sha256"] != original["config_sha256"]


def test_default_cache_dir_sits_under_distillrec_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("DISTILLREC_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path / "embeddings"
    monkeypatch.delenv("DISTILLREC_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "distillrec" / "embeddings"
