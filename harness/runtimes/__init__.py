"""Runtimes that execute a built variant: one module each, registered in RUNTIMES."""
