"""Optional text-to-video prompt enhancement with the Gemma 3 instruct model (ltx-core `enhance_t2v`).

The reference builds the chat with the t2v system prompt, tokenizes it through Gemma3Processor
(which adds a second BOS after the template's own), samples up to 512 new tokens at temperature
0.7 (top-k 50, the transformers default) with torch's RNG seeded, decodes without special tokens,
and cleans the text (`clean_response`). Here the sampling uses MLX's RNG with an explicit key, so
the wording differs from the reference for the same seed; the prompt, the logits and the greedy
continuation match (tests/test_text.py). The reference also right-pads the chat to a multiple of 8
tokens before generating (a Flash Attention alignment); that is not reproduced. Image-to-video
enhancement (vision tower) is not implemented.

LTX-2.5 encodes with a Gemma 4 that cannot generate: its enhancer is another Gemma, a Gemma 3 instruct
folder (`--prompt-enhancer-gemma-root`, ltx-pipelines 1.2.0's option of the same name; the reference also
takes a dense Gemma 4 instruct model there, which this port does not).
"""

from __future__ import annotations  # noqa: I001  (ltx.backend must be imported before mlx)

from pathlib import Path

from ltx import backend  # noqa: F401

# isort: split

import mlx.core as mx  # noqa: E402

from ltx.text.gemma import GemmaTextModel, GemmaTokenizer, gemma_folder_config, load_gemma  # noqa: E402
from ltx.weights.loader import CheckpointError  # noqa: E402

PROMPTS = Path(__file__).parents[1] / "assets" / "prompts"
_UNICODE_REPLACEMENTS = str.maketrans("\u2018\u2019\u201c\u201d\u2014\u2013\u00a0\u2032\u2212", "''\"\"-- '-")


def t2v_system_prompt() -> str:
    """ltx-core's gemma_t2v_system_prompt.txt, verbatim."""
    return (PROMPTS / "gemma_t2v_system_prompt.txt").read_text(encoding="utf-8")


def clean_response(text: str) -> str:
    """ASCII quotes and dashes; drop leading non-letters (ltx_pipelines helpers.clean_response)."""
    text = text.translate(_UNICODE_REPLACEMENTS)
    for i, ch in enumerate(text):
        if ch.isalpha():
            return text[i:]
    return text


def t2v_chat_ids(tokenizer: GemmaTokenizer, prompt: str, system_prompt: str | None = None) -> mx.array:
    """(1, P) token ids of the enhancement chat, as the reference's Gemma3Processor produces them."""
    messages = [
        {"role": "system", "content": system_prompt or t2v_system_prompt()},
        {"role": "user", "content": f"user prompt: {prompt}"},
    ]
    tok = tokenizer.tokenizer
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return mx.array([tok(text)["input_ids"]], dtype=mx.int32)


def generate(
    gemma: GemmaTextModel,
    input_ids: mx.array,
    max_new_tokens: int,
    temperature: float,
    key: mx.array | None,
    top_k: int = 50,
) -> list[int]:
    """Sample (temperature > 0, needs `key`) or greedily pick new tokens until an EOS id; EOS not returned."""
    if temperature > 0 and key is None:
        raise ValueError("sampling with temperature > 0 needs an explicit random key")
    cache = gemma.make_cache()
    logits = gemma.logits(input_ids, cache)[:, -1].astype(mx.float32)  # (1, V)
    out: list[int] = []
    for _ in range(max_new_tokens):
        if temperature > 0:
            key, sub = mx.random.split(key)
            k = min(top_k, logits.shape[-1])
            kth = mx.sort(logits, axis=-1)[:, -k][:, None]
            masked = mx.where(logits < kth, -mx.inf, logits / temperature)
            token = int(mx.random.categorical(masked, key=sub).item())
        else:
            token = int(mx.argmax(logits, axis=-1).item())
        if token in gemma.eos_token_ids:
            break
        out.append(token)
        logits = gemma.logits(mx.array([[token]], dtype=mx.int32), cache)[:, -1].astype(mx.float32)
    return out


def enhance_t2v(
    gemma: GemmaTextModel,
    tokenizer: GemmaTokenizer,
    prompt: str,
    seed: int = 42,
    max_new_tokens: int = 512,
    temperature: float = 0.7,
    system_prompt: str | None = None,
) -> str:
    """An expanded video prompt for `prompt` (seeded sampling; pipelines default to seed 42)."""
    ids = t2v_chat_ids(tokenizer, prompt, system_prompt)
    tokens = generate(gemma, ids, max_new_tokens, temperature, mx.random.key(seed))
    return clean_response(tokenizer.tokenizer.decode(tokens, skip_special_tokens=True))


class PromptEnhancer:
    """Text-to-video prompt enhancement with a Gemma 3 instruct model."""

    def __init__(self, gemma: GemmaTextModel, tokenizer: GemmaTokenizer):
        if not isinstance(gemma, GemmaTextModel):
            raise CheckpointError(
                "prompt enhancement needs a Gemma 3 instruct model and LTX-2.5's Gemma 4 encoder is none; pass "
                "--prompt-enhancer-gemma-root with a Gemma 3 folder (google/gemma-3-12b-it-qat-q4_0-unquantized)"
            )
        self.gemma, self.tokenizer = gemma, tokenizer

    def enhance_t2v(self, prompt: str, seed: int = 42, max_new_tokens: int = 512) -> str:
        return enhance_t2v(self.gemma, self.tokenizer, prompt, seed=seed, max_new_tokens=max_new_tokens)


def load_prompt_enhancer(gemma_dir: str | Path, dtype: mx.Dtype | None = None) -> PromptEnhancer:
    """A separate enhancer from a Gemma 3 folder (`--prompt-enhancer-gemma-root`)."""
    kind = gemma_folder_config(gemma_dir).get("model_type")
    if kind not in ("gemma3", "gemma3_text"):
        raise CheckpointError(
            f"--prompt-enhancer-gemma-root {gemma_dir} is model_type {kind!r}; prompt enhancement runs on a "
            "Gemma 3 instruct folder (google/gemma-3-12b-it-qat-q4_0-unquantized)"
        )
    return PromptEnhancer(load_gemma(gemma_dir, dtype), GemmaTokenizer(gemma_dir))
