"""Executors: where the variant workers (build + the immediate suites) run — `local` processes,
`--jobs` at a time, or tasks on a Ray cluster. The measurement rounds never go through an
executor: latency and memory are measured on the driver, one process at a time, after every
build has finished, so no measurement ever shares the machine with another job."""
