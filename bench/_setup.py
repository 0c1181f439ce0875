"""Imported first by every benchmark script: offline environment, repository root importable.

    from _setup import ROOT
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for key, value in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ.setdefault(key, value)
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
