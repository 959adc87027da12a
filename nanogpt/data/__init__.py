"""Token files, and the loaders that turn them into training batches.

Modules, bottom up: ``paths`` (where datasets live: ``$NANOGPT_DATA_DIR``, names, directories,
the prepare command), ``format`` (the token file format: write, read, validate), ``datasets``
(a name or directory resolved to its shards, its meta.json, its size), ``windows`` (a split as
one sequence of windows, the shuffle), ``loader`` (``DataLoader``, ``val_batches``),
``multiplex`` (``MultiplexLoader``, ``parse_mixture``); and for making datasets, ``prepare``
(``run_prepare``: tokenize, shard, resume; the ``python -m nanogpt.data.prepare NAME`` command),
``documents`` (encoders and readers of records) and one module per dataset: ``shakespeare`` (the
embedded default corpus), ``web_text`` (FineWeb-Edu, OpenWebText), ``task_mixture`` (chat),
``text_files`` (your own files). The names below are the ones to import from
``nanogpt.data``; the prepare modules are imported from where they live, so that loading data
does not import the tokenizer.
"""

from __future__ import annotations

from nanogpt.data.datasets import (
    DATASETS,
    REPO_DATA_DIR,
    count_tokens,
    data_root,
    dataset_meta,
    dataset_tokenizer,
    default_data_root,
    default_out_dir,
    ensure_shakespeare,
    list_shards,
    prepare_command,
    resolve_data_dir,
)
from nanogpt.data.format import (
    HEADER_BYTES,
    HEADER_INTS,
    MAGIC,
    MASK_MAGIC,
    VERSION,
    TokenFileError,
    mask_path,
    read_mask,
    read_tokens,
    write_tokens,
)
from nanogpt.data.loader import DataLoader, val_batches
from nanogpt.data.multiplex import MultiplexLoader, parse_mixture

__all__ = [
    "DATASETS",
    "HEADER_BYTES",
    "HEADER_INTS",
    "MAGIC",
    "MASK_MAGIC",
    "REPO_DATA_DIR",
    "default_data_root",
    "VERSION",
    "DataLoader",
    "MultiplexLoader",
    "TokenFileError",
    "count_tokens",
    "data_root",
    "dataset_meta",
    "dataset_tokenizer",
    "default_out_dir",
    "ensure_shakespeare",
    "list_shards",
    "mask_path",
    "parse_mixture",
    "prepare_command",
    "read_mask",
    "read_tokens",
    "resolve_data_dir",
    "val_batches",
    "write_tokens",
]
