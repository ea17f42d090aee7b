"""fastvlm-harness: build compressed FastVLM variants and prove what each one costs."""

import logging

__version__ = "0.1.0"

# torchao registers enums with torch's pytree at import time and torch warns about it on every
# start; it is not actionable for a user of the harness.
logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)
