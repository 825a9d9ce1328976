# The two commands of README.md. Each sets up everything it needs first
# (tools/setup_env.sh: fast no-op when the stack already works).
PYTHON ?= python3
export PYTHON

.PHONY: setup demo test bench

setup:
	bash tools/setup_env.sh

# The main job: a real SASE search on data a PyPI package ships.
demo: setup
	$(PYTHON) tools/search.py configs/search/sase_r20_digits.py --work-dir work_dirs/demo

test: setup
	$(PYTHON) -m pytest tests -q -p no:cacheprovider -n 2

bench: setup
	$(PYTHON) benchmarks/block_latency.py
