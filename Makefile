# Every target creates .venv itself: torch==2.13.0 (the CPU wheel on this disk) first, then unetkit.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.unetkit-installed

.PHONY: test demo lint bench bench-isbi gpu-check clean

# dynamic-network-architectures is nnU-Net's network code, the reference of
# tests/test_memory_vs_nnunet.py and benchmarks/gpu_bench.py. It needs only torch and numpy, but
# declares timm, whose torchvision would replace torch 2.13.0 by a CUDA build: hence --no-deps.
$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q --no-deps dynamic-network-architectures==0.4.4
	touch $(STAMP)

test: $(STAMP)
	PYTHONUTF8=1 $(PY) -m pytest -q -n 2 --dist loadfile

demo: $(STAMP)
	$(VENV)/bin/unetkit demo --out demo_output --force

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/bench_metrics.py
	$(PY) benchmarks/bench_augment.py
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_infer.py

bench-isbi: $(STAMP)
	$(PY) benchmarks/isbi2012.py ../shared/data/isbi2012/train --config configs/isbi2012.yaml --time 8m

gpu-check: $(STAMP)
	$(PY) benchmarks/gpu_check.py

clean:
	rm -rf $(VENV) demo_output .pytest_cache build *.egg-info
