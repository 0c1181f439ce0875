"""Complexity scores. ifd.py: instruction-following difficulty (docs/iterit.md §2), batched.

    from curate.scoring.ifd import score_rows
"""
