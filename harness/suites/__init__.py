"""Suite kinds (accuracy, latency, memory, size): one module each, registered in SUITE_KINDS."""
