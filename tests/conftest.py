"""Shared test set-up: offline, quiet, deterministic, and GPU tests skipped without a GPU."""

import os
import shutil

# Without a GPU, Triton kernels run in Triton's CPU interpreter (tests/test_loss.py checks the
# GPU loss kernel this way). It must be set before anything imports Triton.
if shutil.which("nvidia-smi") is None:
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _restore_torch_state():
    """Tests may seed or change torch's global state; put it back afterwards."""
    rng = torch.get_rng_state()
    threads = torch.get_num_threads()
    yield
    torch.set_rng_state(rng)
    torch.set_num_threads(threads)
