"""S2OConfig fields as command-line options, shared by the CLI and the benchmark scripts.

One definition keeps option names (--block-n for block_n), defaults and choices in step with
S2OConfig, and turns a bad value into argparse's usage error (exit code 2) naming the field.
"""
from __future__ import annotations

import argparse
import dataclasses

from .config import ORDERINGS, POOLINGS, STOP_RULES, S2OConfig

_CHOICES = {"ordering": ORDERINGS, "stop_rule": STOP_RULES, "pooling": POOLINGS}


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_config_arguments(parser: argparse.ArgumentParser, exclude=(), **defaults) -> None:
    """--field-name for every S2OConfig field not in exclude; defaults override S2OConfig's."""
    group = parser.add_argument_group("S2O configuration (S2OConfig fields)")
    for f in dataclasses.fields(S2OConfig):
        if f.name in exclude:
            continue
        default = defaults.get(f.name, f.default)
        group.add_argument("--" + f.name.replace("_", "-"), dest=f.name, default=default,
                           type=_bool if isinstance(f.default, bool) else type(f.default),
                           choices=_CHOICES.get(f.name),
                           help=f"default {default}")


def config_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace,
                     **fixed) -> S2OConfig:
    """The S2OConfig the parsed options describe (fixed values win); bad values exit with 2."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(S2OConfig)
              if hasattr(args, f.name)}
    values.update(fixed)
    try:
        return S2OConfig(**values)
    except ValueError as e:
        parser.error(str(e))
