"""Data versioning adapter (DVC). The only module of the library that talks to DVC."""
