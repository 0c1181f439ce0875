"""Prefect tasks: one module per stage. Each reads artifacts, calls the `curate` library, writes its
output atomically into the content store and returns a Ref dict (path + content digest)."""
