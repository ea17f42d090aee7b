"""lm-eval `LM` over a harness session, so any lm-eval task (built-in or a local YAML task) can
score a built variant.

Why an adapter and not lm-eval's `hf-multimodal`: a variant is not a hub checkpoint; it is a
session loaded by a harness runtime (steps replayed, quantized modules in place), and image
requests must be formatted exactly as the accuracy suite formats them so scores are comparable.

- `loglikelihood` / `loglikelihood_rolling`: from the torch model's logits (a runtime without logits
  gets a one-line `RuntimeBackendError`). Requests carrying images (`Instance.args[2]["visual"]`,
  lm-eval's multimodal convention) run through the full VLM with `pixel_values`.
- `generate_until`: greedy. Image requests go through the session's own `generate` (any runtime);
  text-only requests through the LLM alone (torch), without image tokens. Answers are cut at the
  `until` strings, and optionally served from / stored in the response cache.

Prompt format: an image request whose context has no `<image>` placeholder becomes one user turn
(question + image) in the model's chat template, as in the accuracy suite; a context with the
placeholder, and every text-only context, is used verbatim (set `apply_chat_template: true` in the
suite to wrap text-only contexts in the chat template).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from harness.errors import RuntimeBackendError

IMAGE_PLACEHOLDER = "<image>"


@register_model("fastvlm-harness")
class HarnessLM(LM):
    MULTIMODAL = True  # lm-eval refuses image tasks for models without this flag

    def __init__(self, session: Any = None, artifact: str | None = None, model: str | None = None,
                 runtime: str = "torch-eager", batch_size: int | str | None = 8, max_gen_toks: int = 32,
                 cache: Any = None, **_: Any) -> None:
        """`session`: an already loaded harness session (the suite passes one). From lm-eval's CLI:
        `artifact=<variant dir>` (loaded by `runtime`), or `model=nano|<fast_vlm dir>`."""
        super().__init__()
        if session is None:
            session = _load(artifact, model, runtime)
        self.session = session
        self.runtime = runtime
        self.batch_size = int(batch_size) if str(batch_size or "").isdigit() else 8
        self.max_gen_toks = int(max_gen_toks)
        self.cache = cache
        self.processor = getattr(session, "processor", None)
        if self.processor is None:
            raise RuntimeBackendError(f"runtime '{runtime}' session has no processor: lm-eval cannot tokenize for it")
        self.tokenizer = self.processor.tokenizer

    # --- lm-eval plumbing ---------------------------------------------------------------
    @property
    def tokenizer_name(self) -> str:
        return str(getattr(self.tokenizer, "name_or_path", "") or type(self.tokenizer).__name__)

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        return self.processor.apply_chat_template(chat_history, add_generation_prompt=add_generation_prompt,
                                                  tokenize=False)

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return getattr(self.processor, "chat_template", None) or ""

    @property
    def torch_model(self) -> Any:
        import torch

        model = getattr(self.session, "model", None)
        return model if isinstance(model, torch.nn.Module) else None

    def _require_logits(self, what: str) -> Any:
        model = self.torch_model
        if model is None:
            raise RuntimeBackendError(
                f"lm-eval {what} needs the model's logits, which runtime '{self.runtime}' does not expose: "
                f"run loglikelihood/multiple-choice tasks on torch-eager (generate_until tasks work on any runtime)")
        return model

    @property
    def max_length(self) -> int:
        model = self.torch_model
        if model is None:
            return 2048
        return int(getattr(model.config.text_config, "max_position_embeddings", 2048))

    @property
    def eot_token_id(self) -> int:
        return int(self.tokenizer.eos_token_id)

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False).input_ids)

    # --- loglikelihood --------------------------------------------------------------------
    def loglikelihood(self, requests: list[Any], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        model = self._require_logits("loglikelihood")
        out: list[tuple[float, bool]] = []
        for begin in range(0, len(requests), self.batch_size):
            chunk = [r.args for r in requests[begin: begin + self.batch_size]]
            images = [_visuals(args) for args in chunk]
            if any(images):
                out += self._loglikelihood_images(model, chunk, images)
            else:
                pairs = [self._split(context, continuation) for context, continuation, *_ in chunk]
                out += self.score_tokens(model, pairs)
        return out

    def _split(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """Context and continuation tokens the way lm-eval's HFLM splits them (trailing context
        spaces move into the continuation; the continuation is whole − context)."""
        spaces = len(context) - len(context.rstrip())
        if spaces:
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        if not context:
            return [self.eot_token_id], self._encode(continuation)
        whole, ctx = self._encode(context + continuation), self._encode(context)
        return ctx, whole[len(ctx):]

    def score_tokens(self, model: Any, pairs: list[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
        """Sum of continuation log-probs and the greedy flag for (context, continuation) token pairs."""
        import torch

        rows = [(ctx + cont)[-(self.max_length + 1):][:-1] for ctx, cont in pairs]
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
        with torch.inference_mode():
            logits = model(input_ids=ids, attention_mask=mask).logits.float()
        return [_continuation_score(logits[i], len(rows[i]), cont) for i, (_, cont) in enumerate(pairs)]

    def _loglikelihood_images(self, model: Any, chunk: list[tuple],
                              images: list[list[Any]]) -> list[tuple[float, bool]]:
        import torch

        if not all(images):
            return [r for args, imgs in zip(chunk, images)
                    for r in (self._loglikelihood_images(model, [args], [imgs]) if imgs
                              else self.score_tokens(model, [self._split(args[0], args[1])]))]
        prompts = [self._image_prompt(args[0]) for args in chunk]
        n_cont = [len(self._split(p, args[1])[1]) for p, args in zip(prompts, chunk)]
        texts = [p + args[1] for p, args in zip(prompts, chunk)]
        self.tokenizer.padding_side = "right"
        rgb = [imgs[0].convert("RGB") for imgs in images]  # FastVLM takes one image per prompt
        inputs = self.processor(images=rgb, text=texts, padding=True, return_tensors="pt")
        with torch.inference_mode():
            logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                           pixel_values=inputs["pixel_values"].to(next(model.parameters()).dtype)).logits.float()
        out = []
        for i, n in enumerate(n_cont):
            length = int(inputs["attention_mask"][i].sum())
            cont = inputs["input_ids"][i, length - n: length].tolist()
            out.append(_continuation_score(logits[i], length - 1, cont))
        return out

    def _image_prompt(self, context: str) -> str:
        if IMAGE_PLACEHOLDER in context:
            return context
        from harness.models.fastvlm import chat_prompts

        return chat_prompts(self.processor, [context])[0]

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

        model = self._require_logits("loglikelihood_rolling")
        out = []
        for request in requests:
            windows = [make_disjoint_window(w) for w in get_rolling_token_windows(
                self._encode(request.args[0]), self.eot_token_id, self.max_length, 1)]
            scores = [s for b in range(0, len(windows), self.batch_size)
                      for s in self.score_tokens(model, windows[b: b + self.batch_size])]
            out.append(sum(s for s, _ in scores))
        return out

    # --- generation -----------------------------------------------------------------------
    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        settings = []
        for request in requests:
            kwargs = dict(request.args[1] or {})
            if kwargs.get("do_sample"):
                raise RuntimeBackendError("the fastvlm-harness lm-eval adapter decodes greedily; remove do_sample")
            until = kwargs.get("until") or []
            settings.append({"until": [until] if isinstance(until, str) else list(until),
                             "max_gen_toks": int(kwargs.get("max_gen_toks", self.max_gen_toks))})
        keys = [self._key(r, s) for r, s in zip(requests, settings)]

        def compute(indices: list[int]) -> list[str]:
            return self._generate([requests[i] for i in indices], [settings[i] for i in indices])

        if self.cache is None:
            return compute(list(range(len(requests))))
        return self.cache.answers(keys, compute, self.batch_size)

    def _key(self, request: Any, settings: dict[str, Any]) -> str:
        if self.cache is None:
            return ""
        return self.cache.key(f"{request.task_name}/{request.doc_id}", request.args[0], _visuals(request.args),
                              settings)

    def _generate(self, requests: list[Any], settings: list[dict[str, Any]]) -> list[str]:
        """Greedy continuations, batched among requests with the same settings and modality."""
        out: list[str | None] = [None] * len(requests)
        groups: dict[tuple, list[int]] = {}
        for i, (request, s) in enumerate(zip(requests, settings)):
            groups.setdefault((bool(_visuals(request.args)), s["max_gen_toks"]), []).append(i)
        for (has_image, max_new), indices in groups.items():
            contexts = [requests[i].args[0] for i in indices]
            if has_image:
                images = [_visuals(requests[i].args)[0] for i in indices]
                questions = [c.replace(IMAGE_PLACEHOLDER, "").strip() for c in contexts]
                texts = self.session.generate(images, questions, max_new_tokens=max_new).texts
            else:
                texts = self._generate_text(contexts, max_new)
            for i, text in zip(indices, texts):
                out[i] = _cut(text, settings[i]["until"])
        return [t or "" for t in out]

    def _generate_text(self, contexts: list[str], max_new_tokens: int) -> list[str]:
        import torch

        model = self.torch_model
        if model is None:
            raise RuntimeBackendError(f"text-only generate_until needs the torch LLM; runtime '{self.runtime}' "
                                      f"only generates with an image")
        self.tokenizer.padding_side = "left"
        rows = [self._encode(c) or [self.eot_token_id] for c in contexts]
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
        with torch.inference_mode():
            generated = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                       do_sample=False, pad_token_id=pad)
        return self.tokenizer.batch_decode(generated[:, width:], skip_special_tokens=True)


def _visuals(args: tuple) -> list[Any]:
    """Images a request carries (lm-eval puts {"visual": [...]} as the last argument)."""
    extra = args[-1] if len(args) >= 2 and isinstance(args[-1], dict) else {}
    visual = extra.get("visual") or []
    return list(visual) if isinstance(visual, (list, tuple)) else [visual]


def _continuation_score(logits: Any, end: int, cont: list[int]) -> tuple[float, bool]:
    """Log-prob of `cont` predicted by positions end-len(cont) .. end-1 of one row's logits."""
    import torch

    picked = torch.log_softmax(logits[end - len(cont): end], dim=-1)
    target = torch.tensor(cont, dtype=torch.long)
    logprob = float(picked.gather(-1, target[:, None]).sum())
    return logprob, bool((picked.argmax(-1) == target).all())


def _cut(text: str, until: list[str]) -> str:
    for stop in until:
        if stop:
            text = text.split(stop)[0]
    return text


def _load(artifact: str | None, model: str | None, runtime: str) -> Any:
    if artifact:
        from harness.registries import RUNTIMES

        return RUNTIMES.get(runtime)().load(Path(artifact).expanduser())
    if model:
        from harness.models.loading import load_model

        return load_model(model, None, False)
    raise RuntimeBackendError("fastvlm-harness needs model_args artifact=<variant dir> or model=<nano|fast_vlm dir>")
