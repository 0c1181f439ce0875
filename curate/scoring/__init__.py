"""Complexity scores. ifd.py: instruction-following difficulty (IterIT note §1), batched.

    from curate.scoring.ifd import score_rows
"""
