"""Synthetic students: a real student's shape, random weights, a tokenizer and `soda` rows that
fit it. Built locally, so the user's GPU machine needs no download.

The models are Qwen2 with the shapes of Qwen2.5's config.json (Hub values written here); the
tokenizer is a Qwen2-style byte-level BPE with the model's exact vocabulary size in which every
word " abcd" is one token, so a row of N random words is N tokens through soda's views and TRL.
"""

from __future__ import annotations

import gc
import json
import shutil
from pathlib import Path
from typing import Any

# Real students' shapes (their config.json values on the Hub), random-initialised here.
MODELS: dict[str, dict[str, Any]] = {
    "qwen2.5-1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                         num_attention_heads=12, num_key_value_heads=2, vocab_size=151936,
                         rope_theta=1.0e6, rms_norm_eps=1e-6, tie_word_embeddings=True,
                         max_position_embeddings=32768),
    "qwen2.5-3b": dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
                       num_attention_heads=16, num_key_value_heads=2, vocab_size=151936,
                       rope_theta=1.0e6, rms_norm_eps=1e-6, tie_word_embeddings=True,
                       max_position_embeddings=32768),
    # --cpu: the tiny test students' scale (tests/tiny_models.py), vocab from the tiny tokenizer.
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=512, rope_theta=1.0e6, rms_norm_eps=1e-6,
                 tie_word_embeddings=True, max_position_embeddings=512),
}

# ChatML, as Qwen2.5 writes it (the template tests/tiny_models.py sets on its qwen2 tokenizer).
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
ROLE_WORDS = ["user", "assistant", "system"]
# Qwen2's pre-tokenizer (transformers' Qwen2Tokenizer.PRETOKENIZE_REGEX): letters after one space
# stay one piece, so " abcd" is one byte-level word.
QWEN_PRETOKENIZE_REGEX = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
                          r"""|\s*[\r\n]+|\s+(?!\S)|\s+""")
def _word_tokens(n: int) -> list[str]:
    """`n` lowercase words (1 to 4 letters), shortest first, so each one's prefix is also a word."""
    import itertools
    import string

    words: list[str] = []
    for length in range(1, 5):
        for letters in itertools.product(string.ascii_lowercase, repeat=length):
            if len(words) == n:
                return words
            words.append("".join(letters))
    raise ValueError(f"cannot make {n} words of up to 4 letters")


def build_tokenizer(vocab_size: int):
    """A Qwen2-style byte-level BPE with exactly `vocab_size` entries and ChatML specials, in
    which every word " abcd" (one space, 1-4 letters) is exactly one token.

    So random text of N words is N tokens through soda's text views and through TRL's own
    tokenization (TRL 1.14.1 DPOTrainer._prepare_dataset tokenizes the text `prompt` and
    `prompt + chosen`; it takes no token ids), and the ids span the
    model's whole vocabulary (151936 for Qwen2.5). Its normalizer, pre-tokenizer and decoder
    are Qwen2Tokenizer's, so the tokenizer tokenizes alike whether transformers reloads it as
    `TokenizersBackend` or, from a folder whose config.json says qwen2, as `Qwen2Tokenizer`
    (transformers 5.20 does the latter and rebuilds the pipeline from vocab and merges).
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    space = "\u0120"  # byte-level form of " "
    merges: list[tuple[str, str]] = []
    n_role_merges = sum(len(w) - 1 for w in ROLE_WORDS)
    n_words = vocab_size - len(alphabet) - len(SPECIAL) - n_role_merges
    words = _word_tokens(n_words)
    for word in words:  # " a" = (Ġ, a); " ab" = (Ġa, b); ...: all ranked before the role merges
        merges.append((space + word[:-1], word[-1]))
    for word in ROLE_WORDS:  # "user", "assistant", "system" without a space (after the template's \n)
        merges += [(word[:i], word[i]) for i in range(1, len(word))]
    vocab: dict[str, int] = {}
    for token in alphabet + [a + b for a, b in merges] + SPECIAL:
        vocab.setdefault(token, len(vocab))
    assert len(vocab) == vocab_size, (len(vocab), vocab_size)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=None, continuing_subword_prefix="",
                               end_of_word_suffix="", fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIAL)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    hf.chat_template = CHATML_TEMPLATE
    assert len(hf) == vocab_size, (len(hf), vocab_size)
    return hf


def text_words(vocab_size: int) -> list[str]:
    """The one-token words of `build_tokenizer(vocab_size)`."""
    n_words = vocab_size - 256 - len(SPECIAL) - sum(len(w) - 1 for w in ROLE_WORDS)
    return _word_tokens(n_words)


def make_rows(settings: dict[str, Any], n: int, tokenizer) -> list[dict[str, Any]]:
    """`soda` rows (content / teacher_response / student_response) of random one-token words,
    sized so that the templated prompt is `prompt_tokens` and each answer plus its
    end-of-turn token is `response_tokens` long."""
    import random

    from soda_plugin.format.chat_format import render_prompt

    rng = random.Random(settings["seed"])
    words = text_words(settings["shape"]["vocab_size"])

    def text(k: int) -> str:
        return "".join(" " + words[rng.randrange(len(words))] for _ in range(k))

    overhead = len(tokenizer(render_prompt(tokenizer, [{"role": "user", "content": " a"}]),
                             add_special_tokens=False)["input_ids"]) - 1
    prompt_words = settings["prompt_tokens"] - overhead
    answer_words = settings["response_tokens"] - 1  # + <|im_end|>
    def answer(k: int) -> str:
        # soda strips both answers: the first word must be one token without its space
        # (a single letter is one byte-level token), the rest are " word" tokens.
        return rng.choice("abcdefghijklmnopqrstuvwxyz") + text(k - 1)

    return [{"content": [{"role": "user", "content": text(prompt_words)}],
             "teacher_response": answer(answer_words), "student_response": answer(answer_words)}
            for _ in range(n)]


def ensure_prepared(settings: dict[str, Any]) -> dict[str, Path]:
    """q0 (random init, saved with its tokenizer) and the rows, built once per workdir."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    from .settings import n_rows, paths as settings_paths, torch_dtype

    paths = settings_paths(settings)
    Path(settings["workdir"]).mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(settings["shape"]["vocab_size"])
    if not paths["rows"].is_file():
        rows = make_rows(settings, n_rows(settings), tokenizer)
        tmp = paths["rows"].with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
        tmp.replace(paths["rows"])
    if not (paths["q0"] / "config.json").is_file():
        shape = dict(settings["shape"])
        rope_theta = shape.pop("rope_theta")
        config = Qwen2Config(
            **shape, rope_parameters={"rope_type": "default", "rope_theta": rope_theta},
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
            use_cache=False,
        )
        torch.manual_seed(settings["seed"])
        with torch.device(settings["device"]):
            model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype(settings))
        tmp = paths["q0"].with_name("q0.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        del model
        gc.collect()
        if settings["device"] == "cuda":
            torch.cuda.empty_cache()
        tmp.replace(paths["q0"])
    return paths


def read_rows(settings: dict[str, Any], n: int) -> list[dict[str, Any]]:
    from .settings import paths

    lines = paths(settings)["rows"].read_text().splitlines()
    return [json.loads(line) for line in lines[:n]]


