"""FastVLM loading, staged generation, the random-weight shapes and the nano reference."""
