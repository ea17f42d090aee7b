"""Local data for the nano_vqa tasks: 42 nano-VQA test items with embedded PNG images, as parquet
(make_data.py regenerates it). `image` decodes to a PIL image, which lm-eval passes to the model
through `doc_to_image`."""

from pathlib import Path


def load(**_: object):  # noqa: ANN201 - a datasets.DatasetDict
    import datasets

    path = Path(__file__).with_name("nano_vqa.parquet")
    return datasets.DatasetDict({"test": datasets.Dataset.from_parquet(str(path))})
