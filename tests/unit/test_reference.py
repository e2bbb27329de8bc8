import pytest

from soda_plugin.train.host_patches import install_reference_model_skip
from soda_plugin.train.reference import should_skip_reference_model

BASE = {"rl": "dpo", "precompute_ref_log_probs": True, "soda": {"free_reference_model": True}}


@pytest.mark.parametrize(
    "changes, skip",
    [
        ({}, True),
        ({"precompute_ref_log_probs": False}, False),
        ({"soda": {"free_reference_model": False}}, False),
        ({"soda": None}, False),
        ({"adapter": "lora"}, False),
        ({"rl": "kto"}, False),
    ],
)
def test_reference_model_is_skipped_only_when_precomputed(changes, skip):
    assert should_skip_reference_model(dict(BASE, **changes)) is skip


def test_wrapper_returns_none_without_loading_and_defers_otherwise(monkeypatch):
    import axolotl.train as axolotl_train

    calls = []

    def fake_setup_reference_model(cfg, tokenizer, processor=None):
        calls.append(cfg)
        return "a loaded reference model"

    monkeypatch.setattr(axolotl_train, "setup_reference_model", fake_setup_reference_model)
    assert install_reference_model_skip() is True
    wrapped = axolotl_train.setup_reference_model
    assert install_reference_model_skip() is True
    assert axolotl_train.setup_reference_model is wrapped  # idempotent: not wrapped twice
    assert wrapped(BASE, None) is None and calls == []
    no_precompute = dict(BASE, precompute_ref_log_probs=False)
    assert wrapped(no_precompute, None) == "a loaded reference model" and calls == [no_precompute]
