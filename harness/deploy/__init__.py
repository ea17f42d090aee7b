"""Integration guides generated from an exported artifact (`harness deploy-guide`, see
docs/deployment/): the facts of *that* artifact — graph files and sizes, every input and output
name, shape and dtype as the graph files declare them, the image preprocessing, the prompt with
its image-token expansion, the stop tokens and the decode loop — read from the export manifest
and the files themselves, rendered as Markdown with Kotlin (LiteRT) or Swift (Core ML) snippets
that use exactly those names."""
