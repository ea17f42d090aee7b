"""A run's results: the run folder and its schema, aggregation, statistics, Pareto, comparison,
the gate, the history database and table export. Reads the run folder, never a worker's internals."""
