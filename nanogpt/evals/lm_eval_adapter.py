"""A nanogpt checkpoint as an lm-evaluation-harness model, so any of its tasks runs on it.

    pip install 'nanogpt[lmeval]'
    python -m nanogpt.evals.lm_eval_adapter --model nanogpt \\
        --model_args checkpoint=runs/d12/step_005000 --tasks hellaswag,arc_easy

The command is the harness's own ``lm_eval`` command line; this module only registers the
``nanogpt`` model first (the harness discovers models by import, and has no plugin entry
point, so the plain ``lm_eval`` command does not know it). From Python, importing this module
is enough: ``lm_eval.simple_evaluate(model="nanogpt", model_args="checkpoint=...")``.

``--model_args``: ``checkpoint`` (a step directory or a run directory: its newest
checkpoint), ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:1``), ``batch_size`` (16),
``max_gen_toks`` (256), ``add_bos`` (true: every context starts with ``<|endoftext|>``, as
the training documents do).

How the three request types are served:

* ``loglikelihood``: the harness splits (context, continuation) into ids (trailing spaces of
  the context move to the continuation); contexts are prefixed with ``<|endoftext|>`` (50256,
  the end-of-text id, also the BOS of training), left-cropped to the model's context, batched
  with right padding (causal attention never sees it); the result is the continuation's summed
  log-probability and whether it is the greedy continuation;
* ``loglikelihood_rolling``: the text in windows of the model's context, each token scored
  once, summed;
* ``generate_until``: the KV-cache engine (``nanogpt.engine``) decodes in batches and stops a
  row at ``<|endoftext|>``, ``<|im_end|>`` or any ``until`` string (the text is cut there).

Mid-trained checkpoints carry the chat format: with ``--apply_chat_template`` the harness's
messages are rendered as ``<|endoftext|><|im_start|>role\\ncontent<|im_end|>\\n`` ... and
``<|im_start|>assistant\\n``, exactly as the tokenizer renders conversations for training.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence

import torch
import torch.nn.functional as F

try:
    import lm_eval.models  # noqa: F401  (the harness's own models first: see _register)
    from lm_eval.api.model import TemplateLM
    from lm_eval.api.registry import register_model
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "the lm-evaluation-harness adapter needs lm-eval: pip install 'nanogpt[lmeval]'"
    ) from e

from nanogpt.dist import autocast
from nanogpt.engine import Engine, is_chat_model, load_model
from nanogpt.sampling import SamplingParams
from nanogpt.tokenizer import ENDOFTEXT, IM_END, IM_START

CHAT_TEMPLATE = (
    "<|endoftext|>{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_SPECIAL = re.compile("(" + "|".join(re.escape(s) for s in (ENDOFTEXT, IM_START, IM_END)) + ")")


def _as_bool(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but CUDA is not available; use device=cpu")
    return torch.device(device)


@register_model("nanogpt")
class NanoGPTLM(TemplateLM):
    """lm-eval model backed by a nanogpt checkpoint (or an in-memory model, for tests)."""

    def __init__(
        self,
        checkpoint: str | None = None,
        device: str = "auto",
        batch_size: int | str = 16,
        max_gen_toks: int | str = 256,
        add_bos: bool | str = True,
        model=None,
        tokenizer=None,
        meta: dict | None = None,
        **unused,
    ) -> None:
        super().__init__()
        if model is None:
            if checkpoint is None:
                raise ValueError("--model_args needs checkpoint=PATH (a nanogpt checkpoint)")
            model, tokenizer, meta = load_model(str(checkpoint), _pick_device(str(device)))
        elif tokenizer is None:
            raise ValueError("an in-memory model needs its tokenizer")
        self.model = model.eval()
        self.nano_tokenizer = tokenizer
        self.meta = meta or {}
        self._device = next(model.parameters()).device
        self.batch_size = int(batch_size) if str(batch_size).isdigit() else 16
        self.max_gen_toks = int(max_gen_toks)
        self.add_bos = _as_bool(add_bos)
        self.max_length = model.config.sequence_len
        self.vocab = min(model.config.vocab_size, tokenizer.n_vocab)
        self.chat = is_chat_model(self.meta)
        self._engine: Engine | None = None
        self._special_ids = {
            ENDOFTEXT: tokenizer.eot_id,
            IM_START: tokenizer.im_start_id,
            IM_END: tokenizer.im_end_id,
        }

    @classmethod
    def create_from_arg_obj(cls, arg_dict: dict, additional_config: dict | None = None):
        """``--model_args`` win over the harness's own flags (``--device``, ``--batch_size``),
        which it passes again as keywords; unset flags (None) are dropped."""
        extra = {k: v for k, v in (additional_config or {}).items() if v is not None}
        return cls(**{**extra, **arg_dict})

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None):
        from lm_eval.utils import simple_parse_args_string

        return cls.create_from_arg_obj(simple_parse_args_string(arg_string), additional_config)

    # -- what the harness asks of every model -------------------------------------------------

    @property
    def eot_token_id(self) -> int:
        return self.nano_tokenizer.eot_id  # 50256 with GPT-2 BPE

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def tokenizer_name(self) -> str:
        return f"nanogpt-{self.nano_tokenizer.name}"

    def tok_encode(
        self, string: str, add_special_tokens: bool | None = None, **kwargs
    ) -> list[int]:
        """Plain text is encoded as text. A prompt this adapter's chat template produced keeps
        its ``<|im_start|>``/``<|im_end|>``/``<|endoftext|>`` markers as the special ids."""
        if self.chat and IM_START in string:
            ids: list[int] = []
            for piece in _SPECIAL.split(string):
                if piece in self._special_ids:
                    ids.append(self._special_ids[piece])
                elif piece:
                    ids += self.nano_tokenizer.encode(piece)
            return ids
        return self.nano_tokenizer.encode(string)

    def tok_decode(self, ids: Sequence[int]) -> str:
        return self.nano_tokenizer.decode(ids)

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return CHAT_TEMPLATE if chat_template not in (False, None) else None

    def apply_chat_template(
        self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True
    ) -> str:
        text = ENDOFTEXT
        for message in chat_history:
            text += f"{IM_START}{message['role']}\n{message['content']}{IM_END}\n"
        if add_generation_prompt:
            text += f"{IM_START}assistant\n"
        return text

    # -- scoring ---------------------------------------------------------------------------

    def _with_bos(self, context: list[int]) -> list[int]:
        if self.add_bos and (not context or context[0] != self.eot_token_id):
            return [self.eot_token_id, *context]
        return list(context)

    @torch.inference_mode()
    def _score(self, pairs: Sequence[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
        """Summed log-probability of each continuation after its context, and whether greedy
        decoding would produce it. Contexts are used as given (no BOS added here)."""
        out: list[tuple[float, bool] | None] = [None] * len(pairs)
        order = sorted(range(len(pairs)), key=lambda i: -(len(pairs[i][0]) + len(pairs[i][1])))
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            inputs, spans = [], []
            for i in rows:
                context, continuation = pairs[i]
                if not continuation:
                    raise ValueError("lm-eval asked to score an empty continuation")
                whole = (list(context) + list(continuation))[-(self.max_length + 1) :]
                inp = whole[:-1]
                n = min(len(continuation), len(inp))
                inputs.append(inp)
                spans.append((len(inp) - n, len(inp), whole[-n:]))
            width = max(len(x) for x in inputs)
            ids = torch.zeros((len(inputs), width), dtype=torch.long)
            for r, x in enumerate(inputs):
                ids[r, : len(x)] = torch.tensor(x)
            with autocast(self.device):
                logits = self.model(ids.to(self.device))  # (B, T, V)
            for r, i in enumerate(rows):
                begin, end, targets = spans[r]
                target = torch.tensor(targets, device=self.device)
                # the softmax over the continuation's positions only: (n, V), not (B, T, V)
                lp = F.log_softmax(logits[r, begin:end, : self.vocab].float(), dim=-1)
                total = lp.gather(1, target[:, None]).sum().item()
                greedy = bool((lp.argmax(-1) == target).all())
                out[i] = (total, greedy)
        return out  # type: ignore[return-value]

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs):
        pairs = [(self._with_bos(context), continuation) for _, context, continuation in requests]
        results = self._score(pairs)
        for (key, _, _), result in zip(requests, results):
            self.cache_hook.add_partial("loglikelihood", key, result)
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        results = []
        for (text,) in [req.args for req in requests]:
            windows = [
                make_disjoint_window(w)
                for w in get_rolling_token_windows(
                    token_list=self.tok_encode(text),
                    prefix_token=self.eot_token_id,
                    max_seq_len=self.max_length,
                    context_len=1,
                )
            ]
            total = sum(lp for lp, _ in self._score(windows))
            self.cache_hook.add_partial("loglikelihood_rolling", (text,), total)
            results.append(total)
        return results

    # -- generation ------------------------------------------------------------------------

    def _engine_for(self) -> Engine:
        if self._engine is None:
            self._engine = Engine(self.model, self.nano_tokenizer)
        return self._engine

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        results: list[str | None] = [None] * len(requests)
        groups: dict[tuple, list[int]] = {}
        parsed = []
        for i, req in enumerate(requests):
            context, gen_kwargs = req.args
            gen_kwargs = dict(gen_kwargs or {})
            until = gen_kwargs.pop("until", None) or []
            until = [until] if isinstance(until, str) else list(until)
            max_new = int(gen_kwargs.pop("max_gen_toks", self.max_gen_toks))
            temperature = float(gen_kwargs.pop("temperature", 0.0) or 0.0)
            if not _as_bool(gen_kwargs.pop("do_sample", False)):
                temperature = 0.0
            parsed.append((context, until, max_new))
            key = (max_new, temperature, tuple(until))
            groups.setdefault(key, []).append(i)
        for (max_new, temperature, until), rows in groups.items():
            params = SamplingParams(temperature=min(temperature, 2.0), top_k=None, seed=1234)
            for start in range(0, len(rows), self.batch_size):
                batch = rows[start : start + self.batch_size]
                texts = self._generate([parsed[i][0] for i in batch], list(until), max_new, params)
                for i, text in zip(batch, texts):
                    results[i] = text
                    self.cache_hook.add_partial("generate_until", requests[i].args, text)
        return results  # type: ignore[return-value]

    def _generate(
        self, contexts: list[str], until: list[str], max_new: int, params: SamplingParams
    ) -> list[str]:
        engine = self._engine_for()
        prompts = [self._with_bos(self.tok_encode(c)) for c in contexts]
        max_new = min(max_new, self.max_length - 1)
        prompts = [p[-(self.max_length - max_new) :] for p in prompts]
        stops = set(engine.stop_tokens)
        tokens: list[list[int]] = [[] for _ in prompts]
        finished = [False] * len(prompts)
        for step, new in enumerate(engine.generate(prompts, max_new, params)):
            for r, token in enumerate(new):
                if token is None or finished[r]:
                    continue
                if token in stops:
                    finished[r] = True
                else:
                    tokens[r].append(token)
            if until and step % 8 == 7:  # stop strings: check now and then, cut exactly below
                for r in range(len(prompts)):
                    if not finished[r] and any(s in self.tok_decode(tokens[r]) for s in until):
                        finished[r] = True
            if all(finished):
                break
        texts = []
        for ids in tokens:
            text = self.tok_decode(ids)
            for s in until:
                if s:
                    text = text.split(s, 1)[0]
            texts.append(text)
        return texts


def evaluate_tasks(
    model,
    tokenizer,
    meta: dict,
    tasks: Sequence[str],
    *,
    limit: int | None = None,
    batch_size: int = 16,
    include_path: str | None = None,
    include_defaults: bool = True,
    apply_chat_template: bool | None = None,
    full: bool = False,
) -> dict:
    """Run harness tasks on a model already in memory (what ``python -m nanogpt.evals
    --lm-eval TASKS`` calls). Returns the harness's ``results`` (task -> metric -> value);
    ``full``: also its ``n-samples``, ``versions`` and ``higher_is_better`` (the parts of its
    output that are plain data), under those keys.

    ``apply_chat_template`` defaults to whether the checkpoint is mid-trained.
    ``include_path`` adds task YAMLs of your own; ``include_defaults=False`` skips indexing
    the harness's built-in tasks (a minute of start-up) when only your own are wanted.
    """
    import lm_eval
    from lm_eval.tasks import TaskManager

    lm = NanoGPTLM(model=model, tokenizer=tokenizer, meta=meta, batch_size=batch_size)
    chat = lm.chat if apply_chat_template is None else apply_chat_template
    out = lm_eval.simple_evaluate(
        model=lm,
        tasks=list(tasks),
        limit=limit,
        task_manager=TaskManager(include_path=include_path, include_defaults=include_defaults),
        apply_chat_template=chat,
        bootstrap_iters=0,
    )
    if out is None:  # simple_evaluate returns None on the non-zero ranks of a process group
        raise RuntimeError("lm-eval returned no results (not rank 0?)")
    if full:
        keys = ("results", "n-samples", "versions", "higher_is_better")
        return {k: out.get(k, {}) for k in keys} | {"chat_template": bool(chat)}
    return out["results"]


def main(argv: Sequence[str] | None = None) -> None:
    """The harness's ``lm_eval`` command line with the ``nanogpt`` model registered."""
    from lm_eval.__main__ import cli_evaluate

    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    cli_evaluate()


if __name__ == "__main__":
    main()
