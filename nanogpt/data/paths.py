"""Where datasets live: the data root (``$NANOGPT_DATA_DIR``), dataset names and their
directories, and the command that (re)creates each one.

The bottom of the data layer: it imports nothing of the project, so that the file format, the
loaders and the prepare machinery can all name the prepare command in their errors.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

DATASETS = ("shakespeare", "fineweb_edu", "openwebtext", "task_mixture", "text")
# The way in to every dataset's prepare command, from an installed package or a checkout alike
# (`nanogpt-prepare` is the same command as a console script). Errors name this form, never a
# file of the checkout.
PREPARE_COMMAND = "python -m nanogpt.data.prepare"
# What earlier versions recorded in meta.json: `python data/<name>/prepare.py ...`.
_CHECKOUT_SCRIPT = re.compile(r"^python data/(\w+)/prepare\.py(?=\s|$)")
REPO_DATA_DIR = Path(__file__).resolve().parents[2] / "data"


def default_data_root(checkout: Path = REPO_DATA_DIR.parent) -> Path:
    """``data/`` of the checkout the package runs from (an editable install or ``PYTHONPATH=.``),
    else the user's cache directory (``$XDG_CACHE_HOME/nanogpt/data``, by default
    ``~/.cache/nanogpt/data``), where an installed package keeps its data."""
    if (checkout / "pyproject.toml").is_file() and (checkout / "nanogpt").is_dir():
        return checkout / "data"
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "nanogpt" / "data"


def data_root() -> Path:
    """Root of named datasets: ``$NANOGPT_DATA_DIR`` if set, else ``default_data_root()``."""
    env = os.environ.get("NANOGPT_DATA_DIR")
    return Path(env).expanduser() if env else default_data_root()


def default_out_dir(name: str, tokenizer: str = "gpt2") -> Path:
    """Where a named dataset is prepared: ``<root>/<name>``, or ``<root>/<name>_bytes`` for the
    byte-level tokenizer (the two never share a directory)."""
    return data_root() / (name if tokenizer == "gpt2" else f"{name}_{tokenizer}")


def _dataset_and_tokenizer(dir_name: str) -> tuple[str, str]:
    for suffix in ("_bytes",):
        if dir_name.endswith(suffix) and dir_name.removesuffix(suffix) in DATASETS:
            return dir_name.removesuffix(suffix), suffix[1:]
    return dir_name, "gpt2"


def prepare_command(data_dir: str | Path) -> str:
    """The command that (re)creates ``data_dir``, for error messages."""
    data_dir = Path(data_dir)
    name, tokenizer = _dataset_and_tokenizer(data_dir.name)
    meta = data_dir / "meta.json"
    if meta.is_file():
        try:
            command = json.loads(meta.read_text()).get("command")
            if command:
                return _CHECKOUT_SCRIPT.sub(rf"{PREPARE_COMMAND} \1", command)
        except (OSError, ValueError):
            pass
    if name in DATASETS:
        default = data_root() / data_dir.name
        out = "" if data_dir.resolve() == default.resolve() else f" --out-dir {data_dir}"
        flag = "" if tokenizer == "gpt2" else f" --tokenizer {tokenizer}"
        return f"{PREPARE_COMMAND} {name}{flag}{out}"
    return f"{PREPARE_COMMAND} text YOUR_FILES --out-dir {data_dir}"


def redo_hint(path: Path) -> str:
    """The end of an error about a broken file: the command that re-creates its dataset."""
    return f"re-create it: `{prepare_command(path.parent)} --overwrite`"


def data_root_help() -> str:
    """Where named datasets live, for the ``--help`` of the command lines that read them."""
    env = os.environ.get("NANOGPT_DATA_DIR")
    now = f"set to {env}" if env else f"unset, so {default_data_root()}"
    return (
        "Named datasets (--data shakespeare, fineweb_edu, ...) live under $NANOGPT_DATA_DIR "
        f"(now {now}); unset, it defaults to data/ in the checkout the package runs from, else "
        "~/.cache/nanogpt/data."
    )
