"""Turn a VQA dataset (image, question, answer) into supervised batches.

Images and text go through the model's own processor once, up front, so training sees exactly
what inference sees; the loss covers only the answer tokens and the end-of-turn token. Rows that
share an image are trained together and the image is encoded once per step (the encoder is most
of the cost on CPU), each question still being its own single-turn sequence as at inference.

Any model family trains through it: the image inputs are whatever the family's processor returns
per prompt (`pixel_values`, and e.g. SmolVLM's `pixel_attention_mask`, LLaVA-OneVision's
`image_sizes`), the features come from the family's `image_features` and go where that processor
wrote the image tokens. FastVLM keeps its own encoder call, whose grid output the auxiliary heads
read; the other families have no auxiliary heads (their tokens are not FastViT's grid).
"""

from __future__ import annotations

import hashlib
from typing import Any

from harness.errors import DataError
from harness.models.fastvlm import model_family, named_module

REQUIRED_COLUMNS = ("image", "question", "answer")
#: What a processor returns besides the image inputs.
TEXT_KEYS = ("input_ids", "attention_mask", "token_type_ids")


class VQABatcher:
    """Batches are drawn by image: `len()` counts distinct images, `loss()` takes image indices."""

    def __init__(self, processor: Any, dataset: Any, chunk: int = 512) -> None:
        import torch

        from harness.models.fastvlm import chat_prompts

        missing = [c for c in REQUIRED_COLUMNS if c not in dataset.column_names]
        if missing:
            raise DataError(f"training data lacks column(s) {missing}; it needs {list(REQUIRED_COLUMNS)}")
        tokenizer = processor.tokenizer
        tokenizer.padding_side = "right"
        end = tokenizer.eos_token
        pixels: dict[str, list[Any]] = {}
        ids, n_answer, image_of_row, cells, digits = [], [], [], [], []
        annotated = "cells" in dataset.column_names and "digit" in dataset.column_names
        image_ids: dict[str, int] = {}
        for begin in range(0, len(dataset), chunk):
            rows = dataset[begin : begin + chunk]
            prompts = chat_prompts(processor, rows["question"])
            texts = [p + str(a) + end for p, a in zip(prompts, rows["answer"])]
            images = [img.convert("RGB") for img in rows["image"]]
            out = processor(images=images, text=texts, padding=True, return_tensors="pt")
            per_row = image_inputs(out, len(images))
            for index, image in enumerate(images):
                key = hashlib.sha1(image.tobytes()).hexdigest()
                if key not in image_ids:
                    image_ids[key] = len(image_ids)
                    for name, values in per_row.items():
                        pixels.setdefault(name, []).append(values[index])
                    if annotated:
                        cells.append(rows["cells"][index])
                        digits.append(rows["digit"][index])
                image_of_row.append(image_ids[key])
            for row_ids, row_mask in zip(out["input_ids"], out["attention_mask"]):
                ids.append(row_ids[row_mask.bool()])
            n_answer += [len(tokenizer(str(a) + end, add_special_tokens=False)["input_ids"])
                         for a in rows["answer"]]
        #: Per distinct image, each image input the processor gave (FastVLM: `pixel_values` only).
        self.image_inputs = {name: torch.stack(values) for name, values in pixels.items()}
        self.pixel_values = self.image_inputs["pixel_values"]
        self.ids = ids
        self.n_answer = n_answer
        self.rows_of_image: list[list[int]] = [[] for _ in self.pixel_values]
        for row, image in enumerate(image_of_row):
            self.rows_of_image[image].append(row)
        self.pad_id = tokenizer.pad_token_id
        self.cells = torch.tensor(cells, dtype=torch.long) if annotated else None
        self.digits = torch.tensor(digits, dtype=torch.long) if annotated else None
        self.aux_heads: Any = None
        #: Tokens (text + visual) in the last batch built: the trainer's throughput counter.
        self.last_tokens = 0

    def enable_auxiliary(self, vision_channels: int, cell_classes: int, digit_classes: int) -> Any:
        """Dense deep supervision of the encoder from scene annotations (nano-VQA's `cells`/`digit`).

        Linear heads classify every visual token's cell content and its grid position (so the
        features carry where things are: the nano encoder has no positional encoding) and the
        pooled digit; the heads are discarded after training. Returns them for the optimizer.
        """
        import torch

        if self.cells is None:
            raise DataError("auxiliary supervision needs 'cells' and 'digit' columns in the training data")
        self.aux_heads = torch.nn.ModuleDict({"cell": torch.nn.Linear(vision_channels, cell_classes),
                                              "position": torch.nn.Linear(vision_channels, self.cells.shape[1]),
                                              "digit": torch.nn.Linear(vision_channels, digit_classes)})
        return self.aux_heads

    def without_auxiliary(self) -> VQABatcher:
        """The same batches with the language-model loss only (nano's curriculum reuses the main
        run's batches instead of processing the train split again)."""
        import copy

        plain = copy.copy(self)
        plain.aux_heads = None
        return plain

    def __len__(self) -> int:
        return len(self.rows_of_image)

    def batch(self, images: list[int]) -> dict[str, Any]:
        """Every row of the given images, padded on the right, with answer-only labels."""
        import torch

        rows = [row for image in images for row in self.rows_of_image[image]]
        image_index = torch.tensor([slot for slot, image in enumerate(images) for _ in self.rows_of_image[image]])
        width = max(len(self.ids[i]) for i in rows)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        for r, index in enumerate(rows):
            seq = self.ids[index]
            input_ids[r, : len(seq)] = seq
            attention[r, : len(seq)] = 1
            start = len(seq) - self.n_answer[index]
            labels[r, start : len(seq)] = seq[start:]
        self.last_tokens = int(attention.sum())
        return {"input_ids": input_ids, "attention_mask": attention, "labels": labels,
                **{name: values[images] for name, values in self.image_inputs.items()}, "image_index": image_index}

    def _encode(self, model: Any, batch: dict[str, Any]) -> tuple[Any, Any]:
        """(encoder output or None, projected features as (images, tokens, hidden)). FastVLM: its own
        encoder call (the auxiliary heads read the grid); any other family: its `image_features`."""
        if model.config.model_type == "fast_vlm":
            encoded = model.model.get_image_features(pixel_values=batch["pixel_values"].to(model.dtype))
            return encoded, encoded.pooler_output
        inputs = {name: batch[name] for name in self.image_inputs}
        features = model_family(model).image_features(model, inputs)
        images = len(batch["pixel_values"])
        if features.shape[0] != images:  # the families that concatenate every image's tokens
            features = features.reshape(images, -1, features.shape[-1])
        return None, features

    def _embedded(self, model: Any, images: list[int]) -> tuple[dict[str, Any], Any, Any]:
        """(batch on the model's device, image encoder output, input embeddings with features placed)."""
        batch = {k: v.to(model.device) for k, v in self.batch(images).items()}
        encoded, features = self._encode(model, batch)
        input_ids = batch["input_ids"]
        embeds = model.get_input_embeddings()(input_ids)
        image_mask = (input_ids == model.config.image_token_id).unsqueeze(-1)
        placed = features[batch["image_index"]]  # one (tokens, hidden) block per row, gathered once
        slots = int(image_mask.sum())
        if slots != placed.shape[0] * placed.shape[1]:
            raise DataError(f"the processor placed {slots} image tokens but the encoder gave "
                            f"{features.shape[1]} per image; processor and model disagree")
        embeds = embeds.masked_scatter(image_mask, placed.to(embeds.dtype))
        return batch, (encoded, features), embeds

    def answer_outputs(self, model: Any, images: list[int]) -> tuple[Any, Any, Any]:
        """(logits at the positions predicting answer tokens, those tokens, projector output).

        The rows and their answer tokens come in the same order for any model whose tokenizer is
        the same, whatever its visual-token count: what distillation aligns teacher and student on.
        """
        batch, (_, features), embeds = self._embedded(model, images)
        hidden = named_module(model, "llm")(inputs_embeds=embeds, attention_mask=batch["attention_mask"],
                                            use_cache=False).last_hidden_state
        targets = batch["labels"][:, 1:]
        mask = targets != -100
        return named_module(model, "lm_head")(hidden[:, :-1][mask]), targets[mask], features

    def loss(self, model: Any, images: list[int]) -> Any:
        """Encode each image once, place its features in every row about it, return the LM loss."""
        import torch
        import torch.nn.functional as F

        batch, (encoded, _), embeds = self._embedded(model, images)
        loss = model(inputs_embeds=embeds, attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
        if self.aux_heads is not None:
            if encoded is None:
                raise DataError(f"auxiliary heads read FastViT's grid; a {model.config.model_type} model has none")
            tokens = encoded.last_hidden_state.flatten(2).transpose(1, 2)  # (images, tokens, channels)
            cells = self.cells[images]
            if tokens.shape[1] == cells.shape[1]:
                logits = self.aux_heads["cell"](tokens)
                loss = loss + F.cross_entropy(logits.flatten(0, 1), cells.flatten(), ignore_index=-100)
                where = self.aux_heads["position"](tokens).flatten(0, 1)
                slots = torch.arange(tokens.shape[1]).repeat(tokens.shape[0])
                loss = loss + F.cross_entropy(where, slots)
            loss = loss + self._digit_loss(tokens, self.digits[images])
        return loss

    def _digit_loss(self, tokens: Any, digits: Any) -> Any:
        """The digit head on pooled tokens: one digit from all tokens, or a two-digit number's tens
        from the left half of the grid and its ones from the right half (one digit per half)."""
        import torch.nn.functional as F

        head = self.aux_heads["digit"]
        if not bool((digits >= 0).any()):
            return tokens.sum() * 0.0
        if not bool((digits >= 10).any()):
            return F.cross_entropy(head(tokens.mean(1)), digits, ignore_index=-100)
        side = int(round(tokens.shape[1] ** 0.5))
        grid = tokens.reshape(tokens.shape[0], side, side, -1)
        left, right = grid[:, :, : side // 2].flatten(1, 2).mean(1), grid[:, :, side // 2 :].flatten(1, 2).mean(1)
        known = digits >= 0
        tens = digits.where(~known, digits // 10)
        ones = digits.where(~known, digits % 10)
        return F.cross_entropy(head(left), tens, ignore_index=-100) + F.cross_entropy(head(right), ones,
                                                                                     ignore_index=-100)


def image_inputs(out: Any, rows: int) -> dict[str, Any]:
    """The processor's image inputs of each prompt (one image each), by name: one entry per row."""
    found = {}
    for name, values in out.items():
        if name in TEXT_KEYS or not hasattr(values, "shape"):
            continue
        if values.shape[0] != rows:  # e.g. InternVL's tiles of several images in one tensor
            raise DataError(f"the processor's '{name}' has {values.shape[0]} entries for {rows} prompts; training "
                            "batches need one image input per prompt (turn the model's image tiling off)")
        found[name] = values
    return found
