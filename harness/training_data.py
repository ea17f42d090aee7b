"""Turn a VQA dataset (image, question, answer) into supervised batches.

Images and text go through the model's own processor once, up front, so training sees exactly
what inference sees; the loss covers only the answer tokens and the end-of-turn token.
"""

from __future__ import annotations

from typing import Any

from harness.errors import DataError

REQUIRED_COLUMNS = ("image", "question", "answer")


class VQABatcher:
    def __init__(self, processor: Any, dataset: Any, seed: int = 0, chunk: int = 512) -> None:
        import torch

        missing = [c for c in REQUIRED_COLUMNS if c not in dataset.column_names]
        if missing:
            raise DataError(f"training data lacks column(s) {missing}; it needs {list(REQUIRED_COLUMNS)}")
        tokenizer = processor.tokenizer
        tokenizer.padding_side = "right"
        end = tokenizer.eos_token
        pixels, ids, n_answer = [], [], []
        for begin in range(0, len(dataset), chunk):
            rows = dataset[begin : begin + chunk]
            messages = [[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q}]}]
                        for q in rows["question"]]
            prompts = [processor.apply_chat_template(m, add_generation_prompt=True, tokenize=False)
                       for m in messages]
            texts = [p + a + end for p, a in zip(prompts, rows["answer"])]
            images = [img.convert("RGB") for img in rows["image"]]
            out = processor(images=images, text=texts, padding=True, return_tensors="pt")
            pixels.append(out["pixel_values"])
            for row_ids, row_mask in zip(out["input_ids"], out["attention_mask"]):
                ids.append(row_ids[row_mask.bool()])
            n_answer += [len(tokenizer(a + end, add_special_tokens=False)["input_ids"])
                         for a in rows["answer"]]
        self.pixel_values = torch.cat(pixels)
        self.ids = ids
        self.n_answer = n_answer
        self.pad_id = tokenizer.pad_token_id

    def __len__(self) -> int:
        return len(self.ids)

    def batch(self, indices: list[int]) -> dict[str, Any]:
        import torch

        width = max(len(self.ids[i]) for i in indices)
        input_ids = torch.full((len(indices), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(indices), width), dtype=torch.long)
        labels = torch.full((len(indices), width), -100, dtype=torch.long)
        for row, index in enumerate(indices):
            seq = self.ids[index]
            input_ids[row, : len(seq)] = seq
            attention[row, : len(seq)] = 1
            start = len(seq) - self.n_answer[index]
            labels[row, start : len(seq)] = seq[start:]
        return {"input_ids": input_ids, "attention_mask": attention, "labels": labels,
                "pixel_values": self.pixel_values[indices]}
