"""Token files and loaders: format, validation, rank-disjoint batches, exact resume, mixtures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from nanogpt import data
from nanogpt.data import (
    DataLoader,
    MultiplexLoader,
    TokenFileError,
    count_tokens,
    list_shards,
    parse_mixture,
    read_mask,
    read_tokens,
    resolve_data_dir,
    val_batches,
    write_tokens,
)
from nanogpt.tokenizer import N_VOCAB


def make_dataset(
    directory: Path, name: str, sizes: dict[str, list[int]], start: int = 0, mask: bool = False
) -> Path:
    """Shards whose token at global position p is start + p, so a token names its position."""
    directory.mkdir(parents=True, exist_ok=True)
    for split, shard_sizes in sizes.items():
        offset = start
        for i, n in enumerate(shard_sizes):
            tokens = np.arange(offset, offset + n) % N_VOCAB
            m = (tokens % 3 != 0).astype(np.uint8) if mask else None
            write_tokens(directory / f"{name}_{split}_{i:06d}.bin", tokens, m)
            offset += n
    return directory


def llmc_write(path: Path, tokens: np.ndarray) -> None:
    """The way llm.c's dev/data/data_common.py writes a shard."""
    header = np.zeros(256, dtype=np.int32)
    header[0], header[1], header[2] = 20240520, 1, len(tokens)
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(np.asarray(tokens, dtype=np.uint16).tobytes())


# ---------------------------------------------------------------------------------------------
# The file format


def test_round_trip_and_exact_layout(tmp_path):
    path = tmp_path / "x_train_000000.bin"
    tokens = np.array([50256, 15496, 995, 0, 50258], dtype=np.int64)
    write_tokens(path, tokens, mask=[0, 0, 1, 1, 1])
    raw = path.read_bytes()
    assert len(raw) == 1024 + 2 * 5
    assert np.frombuffer(raw[:12], "<i4").tolist() == [20240520, 1, 5]
    assert not any(raw[12:1024])
    assert np.frombuffer(raw[1024:], "<u2").tolist() == tokens.tolist()
    mraw = (tmp_path / "x_train_000000.mask").read_bytes()
    assert np.frombuffer(mraw[:12], "<i4").tolist() == [20240521, 1, 5]
    assert list(mraw[1024:]) == [0, 0, 1, 1, 1]
    for mmap in (None, True, False):
        assert read_tokens(path, mmap=mmap).tolist() == tokens.tolist()
        assert read_mask(path, mmap=mmap).tolist() == [0, 0, 1, 1, 1]
    assert read_tokens(path).dtype == np.uint16
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []  # nothing left over


def test_llmc_shards_load_as_they_are(tmp_path):
    llmc_write(tmp_path / "fineweb_train_000001.bin", np.arange(5000))
    llmc_write(tmp_path / "fineweb_val_000000.bin", np.arange(3000))
    assert read_tokens(tmp_path / "fineweb_val_000000.bin").tolist() == list(range(3000))
    x, y = next(DataLoader(tmp_path, "train", batch_size=2, seq_len=16, shuffle=False))
    assert x[0].tolist() == list(range(16)) and y[0].tolist() == list(range(1, 17))
    assert count_tokens(tmp_path, "train") == 5000


def test_empty_file_and_bad_input(tmp_path):
    write_tokens(tmp_path / "e.bin", [])
    assert len(read_tokens(tmp_path / "e.bin")) == 0
    with pytest.raises(ValueError, match="0..65535"):
        write_tokens(tmp_path / "big.bin", [70000])
    with pytest.raises(ValueError, match="mask has shape"):
        write_tokens(tmp_path / "m.bin", [1, 2, 3], mask=[1, 0])
    assert not (tmp_path / "m.bin").exists()


def corrupt(path: Path, offset: int, value: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset : offset + 4] = np.array([value], "<i4").tobytes()
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: corrupt(p, 0, 12345), "magic number 12345 is not 20240520"),
        (lambda p: corrupt(p, 4, 2), "format version 2 .*uint32"),
        (lambda p: corrupt(p, 4, 7), "format version 7"),
        (
            lambda p: p.write_bytes(p.read_bytes()[:-10]),
            "header says 100 tokens but the file holds 95",
        ),
        (lambda p: p.write_bytes(p.read_bytes()[:-1]), "holds 99 and 1 stray byte"),
        (lambda p: corrupt(p, 8, 4_434_897), "header says 4,434,897 tokens but the file holds 100"),
        (lambda p: p.write_bytes(p.read_bytes()[:500]), "shorter than the 1,024-byte header"),
        (lambda p: corrupt(p, 1024 + 2 * 7, 60000), "token id 60000 at position 7 is outside"),
    ],
)
def test_corrupt_files_get_errors_that_name_the_file(tmp_path, damage, message):
    directory = make_dataset(tmp_path / "openwebtext", "openwebtext", {"val": [100]})
    path = directory / "openwebtext_val_000000.bin"
    damage(path)
    with pytest.raises(TokenFileError, match=message) as err:
        read_tokens(path)
    assert str(path) in str(err.value)
    assert "python -m nanogpt.data.prepare openwebtext" in str(err.value)  # and what to do about it


def test_loader_validates_every_shard_up_front_and_ids_as_it_reads(tmp_path):
    directory = make_dataset(tmp_path / "d", "d", {"train": [500, 500, 500]})
    bad = directory / "d_train_000002.bin"
    bad.write_bytes(bad.read_bytes()[:-20])
    with pytest.raises(TokenFileError, match="d_train_000002.bin: header says 500 tokens"):
        DataLoader(directory, batch_size=1, seq_len=8)
    write_tokens(bad, np.full(500, 65000))
    loader = DataLoader(directory, batch_size=1, seq_len=100, shuffle=False)
    with pytest.raises(TokenFileError, match="d_train_000002.bin: token id 65000"):
        for _ in range(20):
            next(loader)


def test_mask_must_match_its_token_file(tmp_path):
    directory = make_dataset(tmp_path / "chat", "chat", {"train": [300, 300]}, mask=True)
    write_tokens(tmp_path / "other.bin", np.zeros(10), mask=np.ones(10))
    (directory / "chat_train_000001.mask").write_bytes((tmp_path / "other.mask").read_bytes())
    with pytest.raises(
        TokenFileError, match="the mask has 10 entries but chat_train_000001.bin holds 300"
    ):
        read_mask(directory / "chat_train_000001.bin")
    with pytest.raises(TokenFileError, match="chat_train_000001.mask: the mask has 10 entries"):
        DataLoader(directory, batch_size=1, seq_len=8)
    (directory / "chat_train_000001.mask").unlink()
    with pytest.raises(
        TokenFileError, match="chat_train_000001.bin: other files of this split have a .mask"
    ):
        DataLoader(directory, batch_size=1, seq_len=8)
    with pytest.raises(TokenFileError, match="it is a loss-mask file, not a token file"):
        read_tokens(directory / "chat_train_000000.mask")


# ---------------------------------------------------------------------------------------------
# Finding datasets


def test_the_data_root_is_the_checkouts_data_dir_else_the_users_cache(tmp_path, monkeypatch):
    checkout = tmp_path / "nanogpt-checkout"
    (checkout / "nanogpt").mkdir(parents=True)
    (checkout / "pyproject.toml").write_text("[project]\n")
    assert data.default_data_root(checkout) == checkout / "data"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    installed = tmp_path / "site-packages"  # a non-editable install has no pyproject beside it
    (installed / "nanogpt").mkdir(parents=True)
    assert data.default_data_root(installed) == tmp_path / "cache" / "nanogpt" / "data"
    monkeypatch.setenv("NANOGPT_DATA_DIR", str(tmp_path / "mine"))
    assert data.data_root() == tmp_path / "mine"


def test_resolve_data_dir_and_list_shards(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOGPT_DATA_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"python -m nanogpt.data.prepare shakespeare"):
        resolve_data_dir("shakespeare")
    (tmp_path / "fineweb_edu").mkdir()
    with pytest.raises(
        FileNotFoundError, match=r"no token files .*`python -m nanogpt.data.prepare fineweb_edu`"
    ):
        resolve_data_dir("fineweb_edu")
    make_dataset(tmp_path / "fineweb_edu", "fineweb_edu", {"train": [10, 10, 10], "val": [10]})
    assert resolve_data_dir("fineweb_edu") == tmp_path / "fineweb_edu"
    assert resolve_data_dir(str(tmp_path / "fineweb_edu")) == tmp_path / "fineweb_edu"
    shards = list_shards(tmp_path / "fineweb_edu", "train")
    assert [p.name for p in shards] == [f"fineweb_edu_train_{i:06d}.bin" for i in range(3)]
    with pytest.raises(FileNotFoundError, match="fineweb_edu: no test shards"):
        list_shards(tmp_path / "fineweb_edu", "test")
    with pytest.raises(FileNotFoundError, match="no such data directory"):
        resolve_data_dir(str(tmp_path / "nowhere" / "x"))


# ---------------------------------------------------------------------------------------------
# DataLoader


def window_starts(x: torch.Tensor) -> list[int]:
    return x[:, 0].tolist()  # the first token of a window is its start position


def test_batches_are_shifted_windows_of_the_data(tmp_path):
    directory = make_dataset(tmp_path / "d", "d", {"train": [300, 200, 500]})
    for shuffle in (False, True):
        loader = DataLoader(directory, batch_size=4, seq_len=32, shuffle=shuffle)
        for _ in range(10):
            x, y = next(loader)
            assert x.shape == y.shape == (4, 32) and x.dtype == y.dtype == torch.int64
            assert torch.equal(x[:, 1:], y[:, :-1])
            for row in x:  # a window is a run of consecutive positions, also across shard files
                assert row.tolist() == list(range(row[0].item(), row[0].item() + 32))
            assert all(s % 32 == 0 for s in window_starts(x))


def test_ranks_are_disjoint_and_epochs_cover_every_window(tmp_path):
    directory = make_dataset(tmp_path / "d", "d", {"train": [700, 653]})
    n_windows = (1353 - 1) // 16  # 84
    world, B = 3, 4
    loaders = [
        DataLoader(directory, batch_size=B, seq_len=16, rank=r, world_size=world, seed=5)
        for r in range(world)
    ]
    steps_per_epoch = n_windows // (B * world)  # 7: a step never spans two epochs
    seen_per_epoch: list[list[int]] = [[], []]
    for step in range(2 * steps_per_epoch):
        starts = [window_starts(next(loader)[0]) for loader in loaders]
        flat = [s for rank_starts in starts for s in rank_starts]
        assert len(set(flat)) == len(flat), f"ranks shared a window in step {step}"
        seen_per_epoch[step // steps_per_epoch] += flat
    for seen in seen_per_epoch:
        assert len(seen) == len(set(seen)) == steps_per_epoch * B * world
    assert seen_per_epoch[0] != seen_per_epoch[1]  # each epoch is shuffled afresh
    next(loaders[0])
    assert loaders[0].state_dict()["epoch"] == 2
    assert loaders[0].state_dict() == {**loaders[0].state_dict(), "position": B * world}


def test_shuffle_is_deterministic_for_a_seed(tmp_path):
    directory = make_dataset(tmp_path / "d", "d", {"train": [5000]})

    def starts(seed):
        loader = DataLoader(directory, batch_size=8, seq_len=16, seed=seed)
        return [window_starts(next(loader)[0]) for _ in range(5)]

    assert starts(1) == starts(1)
    assert starts(1) != starts(2)
    ordered = DataLoader(directory, "train", batch_size=8, seq_len=16, shuffle=False)
    assert window_starts(next(ordered)[0]) == [16 * i for i in range(8)]


def test_too_small_a_corpus_says_how_much_is_needed(tmp_path):
    directory = make_dataset(tmp_path / "d", "d", {"train": [100]})
    with pytest.raises(ValueError, match=r"holds 100 tokens, but one step .* needs at least 129"):
        DataLoader(directory, batch_size=2, seq_len=32, world_size=2)


@pytest.mark.parametrize("world_size", [1, 2])
def test_state_dict_resume_gives_the_same_batches(tmp_path, world_size):
    directory = make_dataset(tmp_path / "d", "d", {"train": [400, 400]})

    def loaders():
        return [
            DataLoader(directory, batch_size=3, seq_len=16, rank=r, world_size=world_size, seed=3)
            for r in range(world_size)
        ]

    reference = loaders()
    expected = [[next(ld) for _ in range(40)] for ld in reference]  # crosses several epochs
    first = loaders()
    for ld in first:
        for _ in range(17):
            next(ld)
    states = [json.loads(json.dumps(ld.state_dict())) for ld in first]
    assert states[0] == {**states[-1]}  # the same state on every rank
    resumed = loaders()
    for ld, state in zip(resumed, states):
        ld.load_state_dict(state)
    for r, ld in enumerate(resumed):
        for step in range(17, 40):
            x, y = next(ld)
            assert torch.equal(x, expected[r][step][0]) and torch.equal(y, expected[r][step][1])


def test_state_from_other_data_is_refused(tmp_path):
    a = make_dataset(tmp_path / "a", "a", {"train": [400]})
    b = make_dataset(tmp_path / "b", "b", {"train": [500]})
    state = DataLoader(a, batch_size=2, seq_len=8).state_dict()
    with pytest.raises(ValueError, match="files was"):
        DataLoader(b, batch_size=2, seq_len=8).load_state_dict(state)
    with pytest.raises(ValueError, match="seq_len was 8, is now 16"):
        DataLoader(a, batch_size=2, seq_len=16).load_state_dict(state)


def test_plain_reads_give_the_same_batches_as_mmap(tmp_path, monkeypatch):
    directory = make_dataset(tmp_path / "d", "d", {"train": [900, 77, 600]}, mask=True)

    def batches(**kw):
        loader = DataLoader(directory, batch_size=4, seq_len=24, seed=9, **kw)
        return [next(loader) for _ in range(12)]

    mapped = batches(mmap=None)
    for other in (batches(mmap=True), batches(mmap=False)):
        for (x1, y1), (x2, y2) in zip(mapped, other):
            assert torch.equal(x1, x2) and torch.equal(y1, y2)

    def no_mmap(*args, **kwargs):
        raise OSError("mmap is not supported on this filesystem")

    monkeypatch.setattr(np, "memmap", no_mmap)
    for (x1, y1), (x2, y2) in zip(mapped, batches(mmap=None)):  # the automatic fallback
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert read_tokens(directory / "d_train_000001.bin").tolist() == list(range(900, 977))
    with pytest.raises(TokenFileError, match="cannot memory-map it"):
        next(DataLoader(directory, batch_size=1, seq_len=8, mmap=True))


def test_loss_mask_sets_ignored_targets_to_minus_one(tmp_path):
    directory = make_dataset(tmp_path / "chat", "chat", {"train": [1000]}, mask=True)
    x, y = next(DataLoader(directory, batch_size=4, seq_len=16, seed=1))
    target_positions = x + 1  # the token value is its position; the mask is position % 3 != 0
    expected = torch.where(target_positions % 3 != 0, target_positions, -1)
    assert torch.equal(y, expected)
    x_all, y_all = next(DataLoader(directory, batch_size=4, seq_len=16, seed=1, loss_mask="all"))
    assert torch.equal(x_all, x) and torch.equal(y_all, x + 1)


def test_val_batches_are_fixed(tmp_path):
    directory = make_dataset(tmp_path / "d", "d", {"train": [100], "val": [1000]})
    first = list(val_batches(directory, 3, 2, 16, rank=1, world_size=2))
    again = list(val_batches(directory, 3, 2, 16, rank=1, world_size=2))
    assert len(first) == 3
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, again))
    assert window_starts(first[0][0]) == [32, 48]  # rank 1, file order
    loader = DataLoader(directory, "val", batch_size=2, seq_len=16)
    a = next(loader)[0]
    next(loader)
    loader.reset()
    assert torch.equal(next(loader)[0], a)


@pytest.mark.gpu
def test_batches_land_on_the_gpu(tmp_path):
    directory = make_dataset(tmp_path / "d", "d", {"train": [1000]})
    x, y = next(DataLoader(directory, batch_size=2, seq_len=16, device="cuda"))
    assert x.is_cuda and y.is_cuda


# ---------------------------------------------------------------------------------------------
# MultiplexLoader


def three_sources(tmp_path: Path) -> list[Path]:
    return [
        make_dataset(tmp_path / "a", "a", {"train": [4000]}, start=0),
        make_dataset(tmp_path / "b", "b", {"train": [3000]}, start=10_000),
        make_dataset(tmp_path / "c", "c", {"train": [2000]}, start=20_000, mask=True),
    ]


def source_of(x: torch.Tensor) -> list[int]:
    return (x[:, 0] // 10_000).tolist()


def test_mixture_proportions_match_the_weights(tmp_path):
    dirs = three_sources(tmp_path)
    weights = [0.6, 0.3, 0.1]
    loader = MultiplexLoader(list(zip(dirs, weights)), batch_size=10, seq_len=16, seed=0)
    rows = [0, 0, 0]
    for step in range(1, 31):
        x, _ = next(loader)
        for s in source_of(x):
            rows[s] += 1
        assert source_of(x) == loader.last_sources
        for s, w in enumerate(weights):  # within one row of the weight after every step
            assert abs(rows[s] - w * 10 * step) <= 1
    assert rows == [180, 90, 30]
    assert list(loader.source_counts.values()) == rows


def test_mixture_is_deterministic_rank_disjoint_and_resumable(tmp_path):
    dirs = three_sources(tmp_path)
    sources = list(zip(dirs, [2.0, 1.0, 1.0]))

    def loaders(seed=0):
        return [
            MultiplexLoader(sources, batch_size=4, seq_len=16, rank=r, world_size=2, seed=seed)
            for r in range(2)
        ]

    ref = loaders()
    expected = [[next(ld) for _ in range(80)] for ld in ref]  # source c wraps into a 2nd epoch
    for step in range(80):
        starts = window_starts(expected[0][step][0]) + window_starts(expected[1][step][0])
        assert len(set(starts)) == 8, f"ranks shared a window in step {step}"
    assert ref[0].state_dict()["cursors"][2][0] >= 1
    other_seed = [next(loaders(seed=1)[0]) for _ in range(1)]
    assert not torch.equal(other_seed[0][0], expected[0][0][0])

    part = loaders()
    for ld in part:
        for _ in range(25):
            next(ld)
    states = [json.loads(json.dumps(ld.state_dict())) for ld in part]
    resumed = loaders()
    for ld, st in zip(resumed, states):
        ld.load_state_dict(st)
    for r in range(2):
        for step in range(25, 80):
            x, y = next(resumed[r])
            assert torch.equal(x, expected[r][step][0]) and torch.equal(y, expected[r][step][1])


def test_mixture_carries_the_loss_mask_of_chat_sources_only(tmp_path):
    dirs = three_sources(tmp_path)
    loader = MultiplexLoader(list(zip(dirs, [1, 1, 1])), batch_size=6, seq_len=16, seed=2)
    for _ in range(5):
        x, y = next(loader)
        for row_x, row_y, s in zip(x, y, source_of(x)):
            targets = row_x + 1
            if s == 2:  # the chat source: position % 3 == 0 is masked out
                assert torch.equal(row_y, torch.where(targets % 3 != 0, targets, -1))
            else:
                assert torch.equal(row_y, targets)
    everything = MultiplexLoader(
        list(zip(dirs, [1, 1, 1])), batch_size=6, seq_len=16, loss_mask="all"
    )
    assert (next(everything)[1] >= 0).all()


def test_mixture_arguments_are_checked(tmp_path):
    dirs = three_sources(tmp_path)
    with pytest.raises(ValueError, match="positive and finite"):
        MultiplexLoader([(dirs[0], 1.0), (dirs[1], 0.0)], batch_size=2, seq_len=8)
    small = make_dataset(tmp_path / "small", "small", {"train": [40]})
    with pytest.raises(
        ValueError, match=r"small: the train split holds 40 tokens.* needs at least 81"
    ):
        MultiplexLoader([(dirs[0], 1.0), (small, 1.0)], batch_size=8, seq_len=16)
    assert parse_mixture("fineweb_edu:0.8, task_mixture:0.2") == [
        ("fineweb_edu", 0.8),
        ("task_mixture", 0.2),
    ]
    with pytest.raises(ValueError, match="expected NAME_OR_DIR:WEIGHT"):
        parse_mixture("fineweb_edu")


# ---------------------------------------------------------------------------------------------
# The embedded default corpus


def test_ensure_shakespeare_prepares_once(tmp_path):
    out = data.ensure_shakespeare(tmp_path / "shakespeare")
    meta = json.loads((out / "meta.json").read_text())
    assert meta["documents"] == {"val": 4, "train": 38}
    assert meta["tokens"] == {"val": 146_748, "train": 1_419_253}
    assert count_tokens(out, "val") == 146_748
    stamp = (out / "shakespeare_train_000000.bin").stat().st_mtime_ns
    assert data.ensure_shakespeare(tmp_path / "shakespeare") == out
    assert (out / "shakespeare_train_000000.bin").stat().st_mtime_ns == stamp
    x, y = next(DataLoader(out, "val", batch_size=2, seq_len=64, shuffle=False))
    assert x[0, 0].item() == 50256  # each play starts with <|endoftext|>
