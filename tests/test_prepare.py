"""The prepare commands (``python -m nanogpt.data.prepare NAME``), run on small local files with
each dataset's real schema (no network)."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from nanogpt.data import DataLoader, TokenFileError, list_shards, read_mask, read_tokens
from nanogpt.data.documents import gsm8k_messages, interleave, mmlu_messages
from nanogpt.data.paths import PREPARE_COMMAND, prepare_command
from nanogpt.data.prepare import parse_count
from nanogpt.data.prepare.commands import COMMANDS, prepare
from nanogpt.data.prepare.commands import main as prepare_main
from nanogpt.tokenizer import get_tokenizer

ROOT = Path(__file__).resolve().parents[1]
EOT, IM_START, IM_END = 50256, 50257, 50258
WORDS = "the of and to in is that for it as was with be by on not café naïve 東京 ☕ <|endoftext|>".split()


def script(name: str):
    """data/<name>/prepare.py, the checkout's shortcut, as a module (the scripts are not a
    package)."""
    spec = importlib.util.spec_from_file_location(
        f"prepare_{name}", ROOT / "data" / name / "prepare.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def conversation(rng: random.Random, turns: int) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": sentence(rng, 6)}] if rng.random() < 0.3 else []
    for _ in range(turns):
        messages.append({"role": "user", "content": sentence(rng, rng.randint(3, 20))})
        messages.append({"role": "assistant", "content": sentence(rng, rng.randint(3, 40))})
    return messages


def mmlu_rows(rng: random.Random, n: int) -> list[dict]:
    return [
        {
            "question": sentence(rng, 10) + "?",
            "subject": rng.choice(["", "high_school_physics", "anatomy"]),
            "choices": [sentence(rng, 3) for _ in range(4)],
            "answer": rng.randint(0, 3),
        }
        for _ in range(n)
    ]


def gsm8k_rows(rng: random.Random, n: int) -> list[dict]:
    return [
        {
            "question": sentence(rng, 15) + "?",
            "answer": f"Half of 48 is 48/2 = <<48/2=24>>24.\nThen {i} more.\n#### {24 + i}",
        }
        for i in range(n)
    ]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return path


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory) -> dict[str, Path]:
    """Small files with the schema of each hub dataset."""
    d = tmp_path_factory.mktemp("fixtures")
    rng = random.Random(0)
    texts = [sentence(rng, rng.randint(1, 300)) for _ in range(300)]
    fineweb = pa.table(  # fineweb-edu's columns
        {
            "text": texts,
            "id": [f"<urn:uuid:{i}>" for i in range(300)],
            "dump": ["CC-MAIN-2024-10"] * 300,
            "url": [f"https://example.org/{i}" for i in range(300)],
            "language": ["en"] * 300,
            "language_score": [0.9] * 300,
            "token_count": [len(t) // 4 for t in texts],
            "score": [3.1] * 300,
            "int_score": [3] * 300,
        }
    )
    pq.write_table(fineweb.slice(0, 150), d / "fineweb-000.parquet")
    pq.write_table(fineweb.slice(150), d / "fineweb-001.parquet")
    write_jsonl(d / "owt.jsonl", [{"text": sentence(rng, rng.randint(1, 200))} for _ in range(200)])
    pq.write_table(
        pa.table({"messages": [conversation(rng, rng.randint(1, 3)) for _ in range(80)]}),
        d / "smoltalk_train.parquet",
    )
    pq.write_table(
        pa.table({"messages": [conversation(rng, 1) for _ in range(30)]}),
        d / "smoltalk_test.parquet",
    )
    # auxiliary_train nests the fields under "train" in the hub's files; validation does not
    pq.write_table(pa.table({"train": mmlu_rows(rng, 50)}), d / "mmlu_aux.parquet")
    pq.write_table(pa.Table.from_pylist(mmlu_rows(rng, 12)), d / "mmlu_val.parquet")
    write_jsonl(d / "gsm8k_train.jsonl", gsm8k_rows(rng, 20))
    write_jsonl(d / "gsm8k_test.jsonl", gsm8k_rows(rng, 8))
    lines = [sentence(rng, rng.randint(1, 30)) for _ in range(400)]
    (d / "mine.txt").write_text("\n".join(lines[:200]) + "\n\n\n" + "\n".join(lines[200:]) + "\n")
    return d


def run(name: str, out: Path, *args: str) -> dict:
    return prepare([name, *args, "--out-dir", str(out), "--no-progress"])


def args_for(name: str, fx: Path) -> list[str]:
    """Small-shard command lines for each script, on the fixtures."""
    return {
        "shakespeare": ["--shard-tokens", "300k"],
        "fineweb_edu": [
            "--local-files", str(fx / "fineweb-000.parquet"), str(fx / "fineweb-001.parquet"),
            "--val-docs", "20", "--shard-tokens", "2000", "--chunk-docs", "16", "--num-proc", "2",
        ],
        "openwebtext": [
            "--local-files", str(fx / "owt.jsonl"), "--val-docs", "15", "--shard-tokens", "3k",
            "--num-proc", "1",
        ],
        "task_mixture": [
            "--local-files",
            f"smoltalk-train={fx / 'smoltalk_train.parquet'}",
            f"smoltalk-test={fx / 'smoltalk_test.parquet'}",
            f"mmlu-train={fx / 'mmlu_aux.parquet'}",
            f"mmlu-val={fx / 'mmlu_val.parquet'}",
            f"gsm8k-train={fx / 'gsm8k_train.jsonl'}",
            f"gsm8k-test={fx / 'gsm8k_test.jsonl'}",
            "--smoltalk-train-limit", "70", "--smoltalk-val", "10", "--shard-tokens", "2500",
            "--chunk-docs", "8", "--num-proc", "2",
        ],
        "text": [str(fx / "mine.txt"), "--val-every", "25", "--shard-tokens", "1000", "--num-proc", "1"],
    }[name]  # fmt: skip


def outputs(directory: Path) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.suffix in (".bin", ".mask")
    }


def documents(directory: Path, split: str, eot: int = EOT) -> list[list[int]]:
    """The documents of a split: its tokens cut before each <|endoftext|>."""
    tokens = np.concatenate([read_tokens(p) for p in list_shards(directory, split)]).tolist()
    starts = [i for i, t in enumerate(tokens) if t == eot] + [len(tokens)]
    assert starts[0] == 0
    return [tokens[a:b] for a, b in zip(starts, starts[1:])]


# ---------------------------------------------------------------------------------------------


def test_fineweb_edu_from_local_parquet(tmp_path, fixtures):
    out = tmp_path / "fineweb_edu"
    summary = run("fineweb_edu", out, *args_for("fineweb_edu", fixtures))
    assert summary["status"] == "done"
    assert summary["documents"] == {"val": 20, "train": 280}
    texts = pq.read_table(fixtures / "fineweb-000.parquet").column("text").to_pylist()
    texts += pq.read_table(fixtures / "fineweb-001.parquet").column("text").to_pylist()
    tok = get_tokenizer()
    assert documents(out, "val") == [tok.encode_document(t) for t in texts[:20]]
    assert documents(out, "train") == [tok.encode_document(t) for t in texts[20:]]
    for shard in list_shards(out, "train"):  # shards are cut at document boundaries
        tokens = read_tokens(shard)
        assert tokens[0] == EOT and (len(tokens) <= 2000 or (tokens == EOT).sum() == 1)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["tokenizer"] == "gpt2" and meta["vocab_size"] == 50259
    assert meta["shards"]["train"] == len(list_shards(out, "train")) > 3
    assert sum(meta["tokens"].values()) == sum(len(read_tokens(p)) for p in out.glob("*.bin"))
    assert not (out / ".partial").exists()


def test_byte_level_prepare_writes_bytes_and_says_so(tmp_path, fixtures):
    out = tmp_path / "fineweb_edu_bytes"
    run("fineweb_edu", out, *args_for("fineweb_edu", fixtures), "--tokenizer", "bytes")
    texts = pq.read_table(fixtures / "fineweb-000.parquet").column("text").to_pylist()
    tok = get_tokenizer("bytes")
    assert documents(out, "val", eot=tok.eot_id) == [tok.encode_document(t) for t in texts[:20]]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["tokenizer"] == "bytes" and meta["vocab_size"] == 259
    assert "--tokenizer bytes" in meta["command"]
    assert int(read_tokens(list_shards(out, "train")[0], vocab_size=259).max()) <= 256


def test_resuming_with_another_tokenizer_is_refused(tmp_path, fixtures):
    out = tmp_path / "fw"
    args = args_for("fineweb_edu", fixtures)
    run("fineweb_edu", out, *args, "--stop-after-shards", "1")
    with pytest.raises(ValueError, match=r"different settings \(tokenizer: \['gpt2'\] then"):
        run("fineweb_edu", out, *args, "--tokenizer", "bytes")


def test_openwebtext_from_local_jsonl_with_max_docs(tmp_path, fixtures):
    out = tmp_path / "owt"
    summary = run("openwebtext", out, *args_for("openwebtext", fixtures), "--max-docs", "100")
    assert summary["documents"] == {"val": 15, "train": 100}
    rows = [json.loads(line)["text"] for line in (fixtures / "owt.jsonl").read_text().splitlines()]
    assert documents(out, "train")[-1] == get_tokenizer().encode_document(rows[114])


def test_the_number_of_processes_does_not_change_the_output(tmp_path, fixtures):
    base = args_for("fineweb_edu", fixtures)
    run("fineweb_edu", tmp_path / "a", *base, "--num-proc", "1", "--chunk-docs", "7")
    run("fineweb_edu", tmp_path / "b", *base, "--num-proc", "2", "--chunk-docs", "64")
    assert outputs(tmp_path / "a") == outputs(tmp_path / "b")


@pytest.mark.parametrize(
    "name", ["shakespeare", "fineweb_edu", "openwebtext", "task_mixture", "text"]
)
def test_interrupted_prepare_resumes_to_the_same_tokens(tmp_path, fixtures, name):
    args = args_for(name, fixtures)
    whole = run(name, tmp_path / "whole", *args)
    out = tmp_path / "resumed"
    stopped = run(name, out, *args, "--stop-after-shards", "2")
    assert stopped["status"] == "stopped" and not (out / "meta.json").exists()
    assert len(outputs(out)) >= 2
    # what a kill can leave behind: a half-written temporary file, and a shard written after the
    # last progress record (killed between the two renames)
    shards = sorted(out.glob("*_train_*.bin")) or sorted(out.glob("*_val_*.bin"))
    (out / f".{shards[-1].name}.tmp-999").write_bytes(b"half a shard")
    later = shards[-1].with_name(re.sub(r"_\d{6}\.bin$", "_000007.bin", shards[-1].name))
    later.write_bytes(shards[-1].read_bytes())
    resumed = run(name, out, *args)
    assert resumed["status"] == "done"
    assert outputs(out) == outputs(tmp_path / "whole")
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []
    assert resumed["documents"] == whole["documents"] and resumed["tokens"] == whole["tokens"]


@pytest.mark.slow  # 9 s on a shared 2-core CPU (2026-12-03)
def test_a_killed_process_resumes_to_the_same_tokens(tmp_path):
    rng = random.Random(1)
    big = tmp_path / "big.txt"
    big.write_text("\n".join(sentence(rng, rng.randint(5, 60)) for _ in range(12_000)) + "\n")
    args = [str(big), "--shard-tokens", "10000", "--num-proc", "1", "--no-progress"]
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "nanogpt.data.prepare", "text", *args, "--out-dir", str(out)]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while not (out / "text_train_000003.bin").exists() and proc.poll() is None:
            assert time.time() < deadline, "the prepare never wrote its fourth shard"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    if (out / "meta.json").exists():
        pytest.skip("the prepare finished before it could be killed")
    prepare(["text", *args, "--out-dir", str(out)])
    prepare(["text", *args, "--out-dir", str(tmp_path / "whole")])
    assert outputs(out) == outputs(tmp_path / "whole")


def test_a_finished_prepare_does_nothing_when_rerun(tmp_path, fixtures, capsys):
    out = tmp_path / "owt"
    run("openwebtext", out, *args_for("openwebtext", fixtures))
    out_text = capsys.readouterr().out
    assert "openwebtext: 200 documents (val 15, train 185)" in out_text and " s -> " in out_text
    stamps = {p: p.stat().st_mtime_ns for p in out.iterdir()}
    summary = run("openwebtext", out, *args_for("openwebtext", fixtures))
    assert summary["status"] == "already prepared"
    assert "already prepared" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in out.iterdir()} == stamps
    again = run("openwebtext", out, *args_for("openwebtext", fixtures), "--overwrite")
    assert again["status"] == "done" and outputs(out)


def test_resuming_with_other_settings_is_refused(tmp_path, fixtures):
    out = tmp_path / "fw"
    args = args_for("fineweb_edu", fixtures)
    run("fineweb_edu", out, *args, "--stop-after-shards", "1")
    with pytest.raises(ValueError, match=r"different settings \(source: .*--overwrite"):
        run("fineweb_edu", out, *args, "--val-docs", "30")
    assert run("fineweb_edu", out, *args, "--val-docs", "30", "--overwrite")["status"] == "done"


def test_a_damaged_prepared_shard_names_the_command_that_remakes_it(tmp_path, fixtures):
    out = tmp_path / "owt"
    run("openwebtext", out, *args_for("openwebtext", fixtures))
    shard = out / "openwebtext_train_000001.bin"
    shard.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(TokenFileError) as err:
        DataLoader(out, batch_size=1, seq_len=8)
    message = str(err.value)
    assert str(shard) in message and "but the file holds" in message
    assert (
        "python -m nanogpt.data.prepare openwebtext --local-files" in message
        and "--overwrite" in message
    )


# ---------------------------------------------------------------------------------------------
# The chat mixture


def assistant_mask(tokens: list[int]) -> list[int]:
    """The mask worked out from the token stream alone: 1 from the first token of an assistant
    message's content through its <|im_end|>, 0 elsewhere."""
    tok = get_tokenizer()
    mask, i = [0] * len(tokens), 0
    while i < len(tokens):
        if tokens[i] != IM_START:
            i += 1
            continue
        j = tokens.index(tok.encode("\n")[0], i)  # the header ends at the first newline
        role = tok.decode(tokens[i + 1 : j])
        end = tokens.index(IM_END, j)
        if role == "assistant":
            mask[j + 1 : end + 1] = [1] * (end - j)
        i = end + 1
    return mask


def test_task_mixture_counts_rendering_and_mask(tmp_path, fixtures):
    out = tmp_path / "task_mixture"
    summary = run("task_mixture", out, *args_for("task_mixture", fixtures))
    # train: 70 of 80 smoltalk + 50 mmlu + 20 gsm8k; val: 10 of 30 smoltalk + 12 mmlu + 8 gsm8k
    assert summary["documents"] == {"val": 30, "train": 140}
    assert summary["has_mask"] and all(p.with_suffix(".mask").exists() for p in out.glob("*.bin"))
    tok = get_tokenizer()
    smoltalk = pq.read_table(fixtures / "smoltalk_train.parquet").column("messages").to_pylist()
    aux = [row["train"] for row in pq.read_table(fixtures / "mmlu_aux.parquet").to_pylist()]
    gsm = [json.loads(line) for line in (fixtures / "gsm8k_train.jsonl").read_text().splitlines()]
    expected = [tok.render_conversation(m) for m in smoltalk[:70]]
    expected += [tok.render_conversation(mmlu_messages(r)) for r in aux]
    expected += [tok.render_conversation(gsm8k_messages(r)) for r in gsm]

    shards = list_shards(out, "train")
    tokens = np.concatenate([read_tokens(p) for p in shards]).tolist()
    mask = np.concatenate([read_mask(p) for p in shards]).tolist()
    assert mask == assistant_mask(tokens)  # exactly the assistant turns, nothing else
    starts = [i for i, t in enumerate(tokens) if t == EOT] + [len(tokens)]
    got = [(tokens[a:b], mask[a:b]) for a, b in zip(starts, starts[1:])]
    assert sorted(map(str, got)) == sorted(map(str, expected))  # every example once, no other
    kinds = [
        "mmlu" if "multiple choice" in tok.decode(t) or "letter" in tok.decode(t) else "other"
        for t, _ in got[:20]
    ]
    assert "mmlu" in kinds and "other" in kinds  # the sources are interleaved, not concatenated

    x, y = next(DataLoader(out, batch_size=4, seq_len=64, seed=0))
    assert (y == -1).any() and (y >= 0).any()
    x_all, y_all = next(DataLoader(out, batch_size=4, seq_len=64, seed=0, loss_mask="all"))
    assert (y_all >= 0).all() and torch.equal(y[y >= 0], y_all[y >= 0])


def test_mmlu_and_gsm8k_rendering():
    row = {
        "question": "What is 2+2?",
        "subject": "elementary_mathematics",
        "choices": ["3", "4", "5", "6"],
        "answer": 1,
    }
    flat = mmlu_messages(row)
    assert flat == mmlu_messages({"train": row})  # the nested auxiliary_train layout
    assert flat[0]["role"] == "user" and flat[1] == {"role": "assistant", "content": "B"}
    assert "about elementary mathematics" in flat[0]["content"]
    assert "A. 3\nB. 4\nC. 5\nD. 6" in flat[0]["content"]
    with pytest.raises(ValueError, match="answer 4"):
        mmlu_messages({**row, "answer": 4})
    gsm = gsm8k_messages({"question": "Q?", "answer": "48/2 = <<48/2=24>>24 clips.\n#### 24"})
    assert gsm[1] == {"role": "assistant", "content": "48/2 = 24 clips.\n#### 24"}


def test_interleave_and_counts():
    merged = list(interleave([["a"] * 6, ["b"] * 3, ["c"] * 1], [6, 3, 1]))
    assert sorted(merged) == sorted(["a"] * 6 + ["b"] * 3 + ["c"])
    for n in range(1, 11):  # every prefix is in proportion, within one item
        assert all(abs(merged[:n].count(k) - w * n / 10) <= 1 for k, w in zip("abc", [6, 3, 1]))
    assert list(interleave([[1, 2], [3, 4, 5, 6]], [1, 1])) == [1, 3, 2, 4, 5, 6]  # one runs out
    assert parse_count("100M") == 100_000_000 and parse_count("1e8") == 100_000_000
    assert parse_count("2_500") == 2500


# ---------------------------------------------------------------------------------------------
# Your own text


def test_text_lines_delimiters_and_whole_files(tmp_path, fixtures):
    tok = get_tokenizer()
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("first line\n\nsecond line\r\nthird line\n")
    (src / "b.txt").write_text("fourth line\n")
    lines = run("text", tmp_path / "lines", str(src), "--val-every", "2", "--num-proc", "1")
    assert lines["documents"] == {"val": 2, "train": 2}
    assert documents(tmp_path / "lines", "val") == [
        tok.encode_document(t) for t in ("second line", "fourth line")
    ]

    (src / "c.txt").write_text("doc one\nstill one\n===\ndoc two\n===\n\n===\ndoc three")
    parts = run(
        "text",
        tmp_path / "parts",
        str(src / "c.txt"),
        "--delimiter",
        r"\n===\n",
        "--val-every",
        "0",
        "--name",
        "mine",
    )
    assert parts["documents"] == {"train": 3}
    assert documents(tmp_path / "parts", "train")[0] == tok.encode_document("doc one\nstill one")
    assert (tmp_path / "parts" / "mine_train_000000.bin").exists()

    whole = run(
        "text",
        tmp_path / "whole",
        str(src / "a.txt"),
        str(src / "c.txt"),
        "--whole-file",
        "--val-every",
        "2",
    )
    assert whole["documents"] == {"val": 1, "train": 1}


def test_text_conversations_and_columns(tmp_path, fixtures):
    rng = random.Random(3)
    chats = [{"messages": conversation(rng, 2)} for _ in range(10)]
    write_jsonl(tmp_path / "chats.jsonl", chats)
    summary = run("text", tmp_path / "chat", str(tmp_path / "chats.jsonl"), "--val-every", "5")
    assert summary["has_mask"] and summary["documents"] == {"val": 2, "train": 8}
    tokens = read_tokens(tmp_path / "chat" / "text_val_000000.bin").tolist()
    assert read_mask(tmp_path / "chat" / "text_val_000000.bin").tolist() == assistant_mask(tokens)

    pq.write_table(pa.table({"body": ["alpha beta", "gamma", "delta"]}), tmp_path / "t.parquet")
    col = run(
        "text", tmp_path / "col", str(tmp_path / "t.parquet"), "--field", "body", "--val-every", "3"
    )
    assert col["documents"] == {"val": 1, "train": 2}
    with pytest.raises(KeyError, match="no 'text' column .*'body'"):
        run("text", tmp_path / "nocol", str(tmp_path / "t.parquet"))
    (tmp_path / "latin.txt").write_bytes("caf\xe9\n".encode("latin-1") + b"x\n")
    with pytest.raises(SystemExit, match="latin.txt: not UTF-8"):
        run("text", tmp_path / "latin", str(tmp_path / "latin.txt"))


# ---------------------------------------------------------------------------------------------
# The way in: `python -m nanogpt.data.prepare NAME`, from anywhere


def test_the_module_form_prepares_from_another_directory_and_records_itself(tmp_path):
    """What an installed package offers: the `-m` command, run outside the checkout, with the
    data root from $NANOGPT_DATA_DIR; meta.json records that command, so errors repeat it."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"line {i} of a tiny corpus\n" for i in range(40)))
    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NANOGPT_DATA_DIR": str(root)}
    args = ["text", str(corpus), "--name", "tiny", "--val-every", "10", "--num-proc", "1"]
    done = subprocess.run(
        [sys.executable, "-m", "nanogpt.data.prepare", *args, "--no-progress"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"-> {root / 'tiny'}" in done.stdout
    meta = json.loads((root / "tiny" / "meta.json").read_text())
    assert meta["command"].startswith(f"{PREPARE_COMMAND} text {corpus}")
    assert meta["documents"] == {"val": 4, "train": 36}
    assert prepare_command(root / "tiny").startswith(PREPARE_COMMAND)


def test_the_embedded_corpus_through_the_command_records_the_command(tmp_path):
    out = tmp_path / "shakespeare_bytes"
    summary = prepare(["shakespeare", "--tokenizer", "bytes", "--out-dir", str(out),
                       "--no-progress", "--num-proc", "1"])  # fmt: skip
    assert summary["status"] == "done" and summary["tokenizer"] == "bytes"
    assert summary["command"] == f"{PREPARE_COMMAND} shakespeare --tokenizer bytes"
    assert "prepare.py" not in json.dumps(summary)


def test_the_listing_names_every_dataset(capsys):
    with pytest.raises(SystemExit) as done:
        prepare_main(["--help"])
    listing = capsys.readouterr().out
    assert done.value.code == 0 and all(f"  {name} " in listing for name in COMMANDS)
    assert listing.startswith(f"usage: {PREPARE_COMMAND} NAME")
    with pytest.raises(SystemExit) as bare:
        prepare_main([])
    assert bare.value.code == 2 and "NAME is one of" in capsys.readouterr().err


def test_names_hyphenated_unknown_and_the_checkout_shortcuts(tmp_path, fixtures):
    args = args_for("fineweb_edu", fixtures)
    hyphen = run("fineweb-edu", tmp_path / "a", *args)
    shortcut = script("fineweb_edu").main(
        [*args, "--out-dir", str(tmp_path / "b"), "--no-progress"]
    )
    assert hyphen["documents"] == shortcut["documents"] == {"val": 20, "train": 280}
    assert outputs(tmp_path / "a") == outputs(tmp_path / "b")
    with pytest.raises(SystemExit, match="no dataset 'fineweb'; one of shakespeare, fineweb_edu"):
        prepare(["fineweb"])
    assert sorted(p.parent.name for p in ROOT.glob("data/*/prepare.py")) == sorted(COMMANDS)


def test_an_old_checkout_command_in_meta_json_is_named_in_the_module_form(tmp_path):
    out = tmp_path / "openwebtext"
    out.mkdir()
    (out / "meta.json").write_text(
        json.dumps({"command": "python data/openwebtext/prepare.py --local-files x.jsonl"})
    )
    assert prepare_command(out) == f"{PREPARE_COMMAND} openwebtext --local-files x.jsonl"
