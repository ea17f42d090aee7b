"""The exit codes of every command, in one place (documented in docs/ci.md and `--help`).

`harness run`: 0 every variant built and every planned suite measured (targets may still be
missed: the last line says so); 1 some variant or suite failed or could not be measured here;
2 a user error, found before or during the run. `harness gate`: 0 every gated check passed;
1 a target was missed or a regression found; 2 bad input; 3 a gated measurement is missing,
failed or cannot be made here — "not measured" never passes.
"""

from __future__ import annotations

OK = 0
INCOMPLETE = 1  # harness run: something the recipe asked for was not measured
USAGE = 2  # a user error: bad input, one line per problem, nothing run
GATE_FAIL = 1
GATE_ERROR = 3
