"""The lm-evaluation-harness adapter, offline: local task YAMLs (``dataset_path: json``) for
each request type, each cross-checked against a direct computation with the model; loading
from a checkpoint by name; the chat template; the command line."""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
lm_eval = pytest.importorskip("lm_eval", reason="the adapter needs lm-eval (pip install lm-eval)")

from lm_eval.tasks import TaskManager  # noqa: E402

from nanogpt import checkpoint as ckpt  # noqa: E402
from nanogpt.config import ModelConfig  # noqa: E402
from nanogpt.evals.lm_eval_adapter import NanoGPTLM  # noqa: E402
from nanogpt.model import GPT  # noqa: E402
from nanogpt.tokenizer import get_tokenizer  # noqa: E402

QUESTIONS = [
    ("What colour is the sky on a clear day?", ["blue", "green", "red", "black"], 0),
    ("How many legs does a spider have?", ["six", "eight", "ten", "four"], 1),
    ("Which planet is closest to the sun?", ["Venus", "Earth", "Mercury", "Mars"], 2),
    ("What do bees make?", ["milk", "silk", "wax and honey", "paper"], 2),
    ("Which is a prime number?", ["4", "9", "15", "7"], 3),
    ("What is frozen water called?", ["ice", "steam", "fog", "dew"], 0),
    ("Which animal barks?", ["cat", "dog", "cow", "owl"], 1),
    ("What is two plus two?", ["three", "five", "four", "six"], 2),
]


def tiny_gpt2_model(seq=64, seed=0):
    torch.manual_seed(seed)
    tok = get_tokenizer("gpt2")
    model = GPT(
        ModelConfig(n_layer=2, n_head=2, n_embd=32, vocab_size=tok.n_vocab, sequence_len=seq)
    )
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return model.eval(), tok


@pytest.fixture(scope="module")
def tasks_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("lmeval_tasks")
    mc = root / "mc.jsonl"
    mc.write_text(
        "".join(
            json.dumps({"question": q, "choices": c, "answer": a}) + "\n" for q, c, a in QUESTIONS
        )
    )
    gen = root / "gen.jsonl"
    gen.write_text(
        "".join(json.dumps({"question": q, "target": c[a]}) + "\n" for q, c, a in QUESTIONS[:4])
    )
    text = root / "text.jsonl"
    long = " ".join(["The quick brown fox jumps over the lazy dog."] * 12)  # > the context
    text.write_text(
        "".join(json.dumps({"text": t}) + "\n" for t in ["A short line of text.", long])
    )
    (root / "fixture_mc.yaml").write_text(
        textwrap.dedent(
            f"""\
            task: fixture_mc
            dataset_path: json
            dataset_kwargs:
              data_files:
                test: {mc}
            test_split: test
            output_type: multiple_choice
            doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
            doc_to_choice: "{{{{choices}}}}"
            doc_to_target: answer
            metric_list:
              - metric: acc
            """
        )
    )
    (root / "fixture_gen.yaml").write_text(
        textwrap.dedent(
            f"""\
            task: fixture_gen
            dataset_path: json
            dataset_kwargs:
              data_files:
                test: {gen}
            test_split: test
            output_type: generate_until
            doc_to_text: "Q: {{{{question}}}}\\nA:"
            doc_to_target: target
            generation_kwargs:
              until: ["\\n", "."]
              max_gen_toks: 10
              do_sample: false
            metric_list:
              - metric: exact_match
            """
        )
    )
    (root / "fixture_rolling.yaml").write_text(
        textwrap.dedent(
            f"""\
            task: fixture_rolling
            dataset_path: json
            dataset_kwargs:
              data_files:
                test: {text}
            test_split: test
            output_type: loglikelihood_rolling
            doc_to_text: ""
            doc_to_target: text
            metric_list:
              - metric: word_perplexity
            """
        )
    )
    return root


def task_manager(tasks_dir):
    # only the fixture tasks: indexing the harness's thousands of built-in YAMLs takes a minute
    return TaskManager(include_path=str(tasks_dir), include_defaults=False)


def evaluate(lm, tasks_dir, task):
    return lm_eval.simple_evaluate(
        model=lm,
        tasks=[task],
        task_manager=task_manager(tasks_dir),
        log_samples=True,
        bootstrap_iters=0,
    )


def logprob_of(model, context_ids, continuation_ids):
    ids = torch.tensor([(context_ids + continuation_ids)[:-1]])  # the last token is never input
    with torch.no_grad():
        logprobs = F.log_softmax(model(ids)[0].float(), dim=-1)
    n = len(continuation_ids)
    positions = range(len(context_ids) - 1, len(context_ids) - 1 + n)
    return sum(logprobs[p, t].item() for p, t in zip(positions, continuation_ids))


def test_multiple_choice_accuracy_equals_a_direct_computation(tasks_dir):
    model, tok = tiny_gpt2_model()
    lm = NanoGPTLM(model=model, tokenizer=tok, meta={}, batch_size=3)
    assert lm.eot_token_id == 50256
    out = evaluate(lm, tasks_dir, "fixture_mc")
    harness_acc = out["results"]["fixture_mc"]["acc,none"]

    direct_correct = []
    for question, choices, answer in QUESTIONS:
        context = [50256, *tok.encode(f"Question: {question}\nAnswer:")]
        scores = [logprob_of(model, context, tok.encode(" " + c)) for c in choices]
        direct_correct.append(max(range(len(choices)), key=scores.__getitem__) == answer)
    assert harness_acc == pytest.approx(sum(direct_correct) / len(QUESTIONS))

    # and item by item, choice by choice, the log-likelihoods themselves
    for sample in out["samples"]["fixture_mc"]:
        question, choices, _ = next(q for q in QUESTIONS if q[0] == sample["doc"]["question"])
        context = [50256, *tok.encode(f"Question: {question}\nAnswer:")]
        got = [resp[0][0] for resp in sample["resps"]]
        want = [logprob_of(model, context, tok.encode(" " + c)) for c in choices]
        assert got == pytest.approx(want, abs=1e-3)


def test_an_oracle_scores_one_on_the_harness(tasks_dir):
    model, tok = tiny_gpt2_model()
    lm = NanoGPTLM(model=model, tokenizer=tok, meta={})
    answers = {tuple(tok.encode(" " + c[a])) for _, c, a in QUESTIONS}

    def oracle_score(pairs):
        return [(0.0 if tuple(cont) in answers else -10.0, False) for _, cont in pairs]

    lm._score = oracle_score
    out = evaluate(lm, tasks_dir, "fixture_mc")
    assert out["results"]["fixture_mc"]["acc,none"] == 1.0


def test_generate_until_equals_the_engine_cut_at_the_stop_strings(tasks_dir):
    from nanogpt.engine import Engine
    from nanogpt.sampling import SamplingParams

    model, tok = tiny_gpt2_model(seed=2)
    lm = NanoGPTLM(model=model, tokenizer=tok, meta={}, batch_size=2)
    out = evaluate(lm, tasks_dir, "fixture_gen")
    engine = Engine(model, tok)
    for sample in out["samples"]["fixture_gen"]:
        prompt = [50256, *tok.encode(f"Q: {sample['doc']['question']}\nA:")]
        ids = engine.generate_batch([prompt], 10, SamplingParams(temperature=0.0, top_k=None))[0]
        text = tok.decode([t for t in ids if t not in engine.stop_tokens])
        want = text.split("\n")[0].split(".")[0]
        assert sample["resps"][0][0] == want


def test_loglikelihood_rolling_scores_every_token_once(tasks_dir):
    model, tok = tiny_gpt2_model(seq=32)
    lm = NanoGPTLM(model=model, tokenizer=tok, meta={}, batch_size=4)
    out = evaluate(lm, tasks_dir, "fixture_rolling")
    L = model.config.sequence_len
    for sample in out["samples"]["fixture_rolling"]:
        tokens = tok.encode(sample["doc"]["text"])
        want = 0.0
        for start in range(0, len(tokens), L):  # window k predicts tokens[kL:(k+1)L]
            # the harness's windows (context_len=1): a window sees the tokens before it that
            # fit in the context with it (one for a full window, more for the last, short one)
            end = min(start + L, len(tokens))
            context = [50256] if start == 0 else tokens[end - L - 1 : start]
            want += logprob_of(model, context, tokens[start : start + L])
        assert sample["resps"][0][0] == pytest.approx(want, abs=1e-3)
    assert len(tok.encode(out["samples"]["fixture_rolling"][1]["doc"]["text"])) > L


def test_the_chat_template_renders_as_the_tokenizer_does():
    model, tok = tiny_gpt2_model()
    lm = NanoGPTLM(model=model, tokenizer=tok, meta={"config": {"mode": "mid-training"}})
    text = lm.apply_chat_template([{"role": "user", "content": "Hello there"}])
    assert lm.tok_encode(text)[:2] == [50256, 50257]
    rendered = tok.render_for_completion([{"role": "user", "content": "Hello there"}])
    assert (
        lm.tok_encode(lm.apply_chat_template([{"role": "user", "content": "Hello there"}]))
        == rendered
    )
    assert lm.chat_template(True) and lm.chat_template(False) is None
    # a base model never turns text into special ids
    base = NanoGPTLM(model=model, tokenizer=tok, meta={})
    assert 50258 not in base.tok_encode("x <|im_end|> y")


def save_checkpoint(tmp_path, seq=64):
    model, tok = tiny_gpt2_model(seq=seq)
    meta = {"model_config": dataclasses.asdict(model.config), "tokenizer": "gpt2", "config": {}}
    ckpt.save(tmp_path, 7, model, torch.optim.SGD(model.parameters(), lr=0.1), meta)
    return model


@pytest.mark.slow  # 3-10 s on an idle 2-core CPU (2026-12-03): out of make test-fast
def test_the_model_loads_from_a_checkpoint_by_name(tasks_dir, tmp_path):
    model = save_checkpoint(tmp_path)
    out = lm_eval.simple_evaluate(
        model="nanogpt",
        model_args=f"checkpoint={tmp_path},device=cpu,batch_size=4",
        tasks=["fixture_mc"],
        task_manager=task_manager(tasks_dir),
        bootstrap_iters=0,
    )
    direct = evaluate(
        NanoGPTLM(model=model, tokenizer=get_tokenizer("gpt2"), meta={}), tasks_dir, "fixture_mc"
    )
    assert out["results"]["fixture_mc"]["acc,none"] == direct["results"]["fixture_mc"]["acc,none"]


@pytest.mark.slow  # 3-10 s on an idle 2-core CPU (2026-12-03): out of make test-fast
def test_evaluate_tasks_on_a_chat_model_applies_the_chat_template(tasks_dir):
    from nanogpt.evals.lm_eval_adapter import evaluate_tasks

    model, tok = tiny_gpt2_model()
    chat_meta = {"config": {"mode": "mid-training"}}
    results = evaluate_tasks(
        model, tok, chat_meta, ["fixture_mc"], limit=4, include_path=str(tasks_dir),
        include_defaults=False,
    )  # fmt: skip
    acc = results["fixture_mc"]["acc,none"]
    # the same four items scored directly, each question as a user turn primed for the reply
    correct = []
    for question, choices, answer in QUESTIONS[:4]:
        prompt = f"Question: {question}\nAnswer:"
        context = tok.render_for_completion([{"role": "user", "content": prompt}])
        scores = [logprob_of(model, context, tok.encode(c)) for c in choices]
        correct.append(max(range(4), key=scores.__getitem__) == answer)
    assert acc == pytest.approx(sum(correct) / 4)
    # and choice by choice
    lm = NanoGPTLM(model=model, tokenizer=tok, meta=chat_meta)
    out = lm_eval.simple_evaluate(
        model=lm, tasks=["fixture_mc"], limit=4, task_manager=task_manager(tasks_dir),
        apply_chat_template=True, log_samples=True, bootstrap_iters=0,
    )  # fmt: skip
    for sample in out["samples"]["fixture_mc"]:
        question, choices, _ = next(q for q in QUESTIONS if q[0] == sample["doc"]["question"])
        prompt = f"Question: {question}\nAnswer:"
        rendered = tok.render_for_completion([{"role": "user", "content": prompt}])
        # the harness moves the context's trailing "\n" into the continuation: it is scored too
        want = [logprob_of(model, rendered[:-1], rendered[-1:] + tok.encode(c)) for c in choices]
        assert [resp[0][0] for resp in sample["resps"]] == pytest.approx(want, abs=1e-3)


def test_a_missing_checkpoint_argument_is_a_clear_error():
    with pytest.raises(ValueError, match="checkpoint=PATH"):
        NanoGPTLM()


@pytest.mark.slow
def test_the_command_line(tasks_dir, tmp_path):
    save_checkpoint(tmp_path / "run")
    env = {
        **os.environ,
        "PYTHONPATH": os.getcwd(),
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
    }
    cmd = [
        sys.executable, "-m", "nanogpt.evals.lm_eval_adapter", "--model", "nanogpt",
        "--model_args", f"checkpoint={tmp_path / 'run'},device=cpu", "--tasks", "fixture_mc",
        "--include_path", str(tasks_dir), "--output_path", str(tmp_path / "out"),
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "fixture_mc" in done.stdout
    assert list((tmp_path / "out").rglob("results_*.json"))


@pytest.mark.slow  # 3-10 s on an idle 2-core CPU (2026-12-03): out of make test-fast
def test_python_m_nanogpt_evals_runs_harness_tasks_and_writes_json(tasks_dir, tmp_path, capsys):
    from nanogpt.evals.cli import main

    model = save_checkpoint(tmp_path / "run")
    out = tmp_path / "res" / "lmeval.json"
    args = ["--checkpoint", str(tmp_path / "run"), "--device", "cpu"]
    code = main([*args, "--lm-eval", "fixture_mc,fixture_gen", "--lm-eval-include",
                 str(tasks_dir), "--limit", "3", "--json", str(out)])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0
    assert "| task | n | metric | value | stderr |" in printed
    assert "| fixture_mc | 3 | acc |" in printed and "| fixture_gen | 3 | exact_match |" in printed
    result = json.loads(out.read_text())
    assert result["suite"] == "lm-eval" and result["step"] == 7
    assert set(result["tasks"]) == {"fixture_mc", "fixture_gen"}
    assert result["n_samples"]["fixture_mc"]["effective"] == 3
    assert any(
        "lm-evaluation-harness 0.4" in n and "chat template off" in n for n in result["notes"]
    )
    # the same numbers as the harness run directly on the model in memory
    direct = lm_eval.simple_evaluate(
        model=NanoGPTLM(model=model, tokenizer=get_tokenizer("gpt2"), meta={}),
        tasks=["fixture_mc"], limit=3, task_manager=task_manager(tasks_dir), bootstrap_iters=0,
    )  # fmt: skip
    acc = direct["results"]["fixture_mc"]["acc,none"]
    assert result["tasks"]["fixture_mc"]["acc,none"] == acc


def test_lm_eval_flag_errors_are_clear(tasks_dir, tmp_path, capsys):
    from nanogpt.evals.cli import main

    save_checkpoint(tmp_path / "run")
    args = ["--checkpoint", str(tmp_path / "run"), "--device", "cpu"]
    assert main([*args, "--lm-eval", "fixture_mc", "--lm-eval-include", str(tmp_path / "no")]) == 1
    err = capsys.readouterr().err
    assert "--lm-eval-include" in err and "not a directory" in err
    assert main([*args, "--lm-eval", " , "]) == 1
    assert "at least one task" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a suite or harness tasks, not both
        main([*args, "--lm-eval", "fixture_mc", "--suite", "core"])
    assert "not allowed with argument" in capsys.readouterr().err
