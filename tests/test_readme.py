"""The README's "Use it" example runs as written (a subprocess, as a user would paste it) and
rewrites its SDPA call: the front door must not drift from the code."""
import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def use_it_example() -> str:
    readme = (ROOT / "README.md").read_text()
    m = re.search(r"## Use it\n```python\n(.*?)```", readme, re.S)
    assert m, "README.md has no python block under '## Use it'"
    return m.group(1)


def test_readme_example_runs_and_rewrites():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-c", use_it_example()], cwd=ROOT, capture_output=True,
                       text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("1 of 1 SDPA call(s) rewritten") == 2, r.stdout
