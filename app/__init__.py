"""The application layer: the `curate` command line (cli.py), the served nightly deployment
(serve.py) and the comparison runner (compare.py). It may import every layer; nothing imports it.
The layers and their contracts are in docs/architecture.md §1 (checked by `lint-imports`)."""
