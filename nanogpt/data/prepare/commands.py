"""One prepare command per dataset, the same from an installed package and from a checkout:

    python -m nanogpt.data.prepare NAME [options]     # or: nanogpt-prepare NAME [options]
    python -m nanogpt.data.prepare NAME --help        # that dataset's options

NAME is one of the datasets below (``fineweb-edu`` and ``fineweb_edu`` are the same). Each
command is idempotent and resumable: run it again after an interruption.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from nanogpt.data.paths import PREPARE_COMMAND, data_root_help

# name: what it prepares (the list `--help` prints)
COMMANDS = {
    "shakespeare": "the embedded Shakespeare plays (offline, seconds; --tokenizer gpt2|bytes)",
    "fineweb_edu": "FineWeb-Edu sample-10BT from the hub or --local-files (~10 B tokens, ~20 GB)",
    "openwebtext": "OpenWebText from the hub or --local-files (~9 B tokens, ~18 GB)",
    "task_mixture": "the chat task mixture: SmolTalk, MMLU, GSM8K, with a loss mask",
    "text": "your own text, jsonl, json or parquet files (FILES... --name NAME)",
}


def dataset_command(name: str) -> Callable[[Sequence[str]], dict]:
    """The prepare function of a dataset's command: argv (its options) -> the summary.

    Imported when asked for, so that listing the commands imports no tokenizer or hub reader.
    """
    key = name.replace("-", "_")
    if key not in COMMANDS:
        raise SystemExit(
            f"{PREPARE_COMMAND}: no dataset {name!r}; one of {', '.join(COMMANDS)} "
            f"(`{PREPARE_COMMAND} --help` lists them)"
        )
    if key == "shakespeare":
        from nanogpt.data.shakespeare import main as shakespeare

        return shakespeare
    if key == "task_mixture":
        from nanogpt.data.task_mixture import main as task_mixture

        return task_mixture
    if key == "text":
        from nanogpt.data.text_files import main as text

        return text
    from nanogpt.data.web_text import main as web_text

    return lambda argv: web_text(key, argv)


def prepare(argv: Sequence[str]) -> dict:
    """``NAME [options]`` -> that dataset prepared; returns its summary (meta.json + status)."""
    name, *options = argv
    return dataset_command(name)(options)


def checkout_shortcut(name: str) -> Callable[[Sequence[str] | None], dict]:
    """The ``main`` of the checkout's ``data/<name>/prepare.py``: this dataset's command, with
    the script's own arguments (``sys.argv[1:]``) unless given others."""

    def main(argv: Sequence[str] | None = None) -> dict:
        return prepare([name, *(sys.argv[1:] if argv is None else argv)])

    return main


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {what}" for name, what in COMMANDS.items()]
    return (
        f"usage: {PREPARE_COMMAND} NAME [options]   (also: nanogpt-prepare NAME [options])\n\n"
        "Tokenize a dataset into token shards and meta.json. NAME is one of:\n\n"
        + "\n".join(lines)
        + f"\n\n`{PREPARE_COMMAND} NAME --help` lists NAME's options. {data_root_help()}"
    )


def main(argv: Sequence[str] | None = None) -> None:
    """The command line: ``python -m nanogpt.data.prepare NAME [options]``, ``nanogpt-prepare``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        raise SystemExit(0 if argv else 2)
    prepare(argv)
