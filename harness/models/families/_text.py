"""The word-level tokenizer and chat template of the tiny and `random:` models of every family.

The nano vocabulary (its ids fit every real vocabulary) plus the family's own special tokens,
named as its processor expects them (`extra_special_tokens`: InternVL reads
`tokenizer.start_image_token` etc.), so that the family's real processor class runs unchanged.
"""

from __future__ import annotations

from typing import Any


def word_tokenizer(named: dict[str, str], extra: tuple[str, ...] = ()) -> Any:
    """The nano word-level tokenizer with `named` (attribute → token) and `extra` special tokens added."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from harness.data.nano_vqa import vocabulary
    from harness.models.nano import SPECIAL_TOKENS

    special = list(dict.fromkeys([*SPECIAL_TOKENS, *named.values(), *extra]))
    words = special + ["user", "assistant", "system"] + vocabulary()
    vocab = {word: index for index, word in enumerate(dict.fromkeys(words))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.add_special_tokens(special)
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", unk_token="<unk>",
                                   eos_token="<|im_end|>", bos_token=None, extra_special_tokens=named)


def nano_tokenizer(named: dict[str, str], extra: tuple[str, ...] = ()) -> Any:
    """The nano sibling's tokenizer: nano's own (digits and box coordinates split as nano splits them,
    every nano word at nano's id) with the family's special tokens appended."""
    from harness.models.nano import build_tokenizer

    return build_tokenizer(named, extra)


def chat_template(image_placeholder: str) -> str:
    """nano's Qwen-style turns with the family's image placeholder (what its processor expands)."""
    from harness.models.nano import CHAT_TEMPLATE

    return CHAT_TEMPLATE.replace("<image>", image_placeholder)


def qwen2_config(tokenizer: Any, dims: dict[str, Any], model_type: str = "qwen2") -> Any:
    """The text config: `dims` (published or tiny) with the tokenizer's special ids."""
    from transformers import AutoConfig

    settings = {"vocab_size": len(tokenizer), **dims}
    return AutoConfig.for_model(model_type, pad_token_id=tokenizer.pad_token_id,
                                eos_token_id=tokenizer.eos_token_id, bos_token_id=None, **settings)
