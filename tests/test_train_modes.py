"""--mode all: pretraining, then mid-training on the chat mixture from the final checkpoint."""

import json
from pathlib import Path

import numpy as np
import pytest

from nanogpt.config import TrainConfig
from nanogpt.data import ensure_shakespeare, write_tokens
from nanogpt.tokenizer import get_tokenizer
from nanogpt.train import train


def write_chat_dataset(root: Path) -> Path:
    """A tiny task_mixture-shaped dataset: rendered conversations with their loss masks."""
    tok = get_tokenizer()
    out = root / "task_mixture"
    out.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 60), ("val", 12)):
        ids, mask = [], []
        for _ in range(n):
            a, b = int(rng.integers(0, 50)), int(rng.integers(0, 50))
            conv = [
                {"role": "user", "content": f"What is {a} plus {b}?"},
                {"role": "assistant", "content": f"{a} plus {b} is {a + b}."},
            ]
            t, m = tok.render_conversation(conv)
            ids += t
            mask += m
        write_tokens(
            out / f"task_mixture_{split}_000000.bin",
            np.array(ids, dtype=np.uint16),
            mask=np.array(mask, dtype=np.uint8),
        )
    return out


@pytest.mark.slow  # 14 s on a shared 2-core CPU (2026-12-03)
def test_mode_all_pretrains_then_mid_trains_from_the_checkpoint(tmp_path, monkeypatch):
    data_root = tmp_path / "data"
    corpus = ensure_shakespeare(data_root / "shakespeare")
    write_chat_dataset(data_root)
    monkeypatch.setenv("NANOGPT_DATA_DIR", str(data_root))
    cfg = TrainConfig(
        mode="all",
        depth=1,
        seq_len=64,
        device_batch_size=4,
        total_batch_size=256,
        num_iterations=6,
        mid_iterations=3,
        warmup_steps=1,
        lr_adamw=3e-3,
        eval_every=3,
        eval_tokens=256,
        save_every=0,
        data=str(corpus),
        out_dir=str(tmp_path / "logs"),
        run_name="both",
        device="cpu",
    )
    summary = train(cfg)
    assert summary["status"] == "ok" and summary["steps"] == 3
    pre = json.loads((tmp_path / "logs" / "both-pretraining" / "summary.json").read_text())
    assert pre["steps"] == 6
    pre_rows, mid_rows = (
        [json.loads(line) for line in (tmp_path / "logs" / run / "metrics.jsonl").open()]
        for run in ("both-pretraining", "both-mid-training")
    )
    assert sorted({r["step"] for r in mid_rows}) == [1, 2, 3]
    assert [r["step"] for r in mid_rows if "val_loss" in r] == [3]  # evaluated at the end
    # mid-training started from the pretrained weights, not from scratch
    assert mid_rows[0]["step"] == 1 and pre_rows[0]["step"] == 1
    assert mid_rows[0]["train_loss"] < pre_rows[0]["train_loss"]
