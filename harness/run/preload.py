"""What the fork server (`harness.isolation`) imports once so that every worker starts with it: the
registries' modules (steps, runtimes, metrics, suite kinds) discovered. No model, no tensor op."""

from harness.registries import METRICS, RUNTIMES, STEPS, SUITE_KINDS

for registry in (STEPS, RUNTIMES, METRICS, SUITE_KINDS):
    registry.names()
