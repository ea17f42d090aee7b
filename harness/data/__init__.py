"""Datasets: the generated nano-VQA set and loading of suite data through `datasets`."""
