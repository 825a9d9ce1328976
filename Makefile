# The two commands of README.md. Each sets up everything it needs first
# (tools/setup_env.sh: fast no-op when the stack already works).
PYTHON ?= python3
export PYTHON

.PHONY: setup demo test lint bench

setup:
	bash tools/setup_env.sh

# The main job: a real SASE search on data a PyPI package ships.
demo: setup
	$(PYTHON) tools/search.py configs/search/sase_r8_digits.py --work-dir work_dirs/demo

test: setup
	$(PYTHON) -m pytest tests -q -p no:cacheprovider -n 2

# Code style (ruff, pinned; settings in pyproject.toml). CI runs it first.
lint: setup
	$(PYTHON) -m ruff check .

bench: setup
	$(PYTHON) benchmarks/block_latency.py

# The wheels that tools/device/gpu_check.sh installs on a GPU machine with no
# network (docs/gpu.md): fills the git-ignored device_wheels/.
.PHONY: device-wheels
device-wheels:
	bash tools/device/fetch_wheels.sh
