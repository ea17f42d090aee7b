"""`python -m harness.lmeval --model fastvlm-harness --model_args artifact=<variant dir> --tasks ...`:
lm-eval's CLI with the adapter registered (plain `lm_eval` does not import harness modules)."""

from __future__ import annotations

import harness.lmeval.adapter  # noqa: F401 - registers "fastvlm-harness"

if __name__ == "__main__":
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()
