"""Operator benchmark: S2O vs the fastest dense SDPA backend (needs a CUDA GPU).

A thin wrapper: the benchmark lives in the package (s2o_compile/bench.py) so that
`python -m s2o_compile bench` works after pip install. Same options, same JSON:

    python benchmarks/bench_op.py --seq-lens 8192 32768 131072 --taus 0 1e-3 1e-2
"""
import sys

from s2o_compile.bench import main

if __name__ == "__main__":
    sys.exit(main())
