"""Making datasets: ``pipeline`` (tokenize documents in worker processes, write shards
atomically, resume after an interruption), ``options`` (the flags every prepare command shares)
and ``commands`` (``python -m nanogpt.data.prepare NAME`` / ``nanogpt-prepare NAME``, one
command per dataset). The names below are the ones to import from ``nanogpt.data.prepare``.
"""

from __future__ import annotations

from nanogpt.data.prepare.options import add_common_args, parse_args, parse_count, run_from_args
from nanogpt.data.prepare.pipeline import (
    HUB_SHARD_TOKENS,
    Split,
    encode_chunk,
    run_prepare,
    shard_path,
)

__all__ = [
    "HUB_SHARD_TOKENS",
    "Split",
    "add_common_args",
    "encode_chunk",
    "parse_args",
    "parse_count",
    "run_from_args",
    "run_prepare",
    "shard_path",
]
