"""Command line: python -m s2o_compile {demo, explain, bench} [options] (--help on each).

    demo      a small HF Llama through torch.compile with the s2o backend (rewrite report,
              graph before/after, prefill vs dense), then the operator vs dense SDPA on
              the structured workload (CPU or GPU; --no-model skips the model part)
    explain   the rewrite report and before/after graph code of a model, written to a folder
    bench     the operator benchmark, S2O vs the fastest dense SDPA (needs a CUDA GPU)

Exit codes: 0 success, 1 the command cannot run here (bench without a GPU), 2 bad arguments.
"""
from __future__ import annotations

import argparse
import sys

from . import bench, demo, explain_cmd

COMMANDS = {"demo": demo, "explain": explain_cmd, "bench": bench}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m s2o_compile", description="s2o-compile tools",
                                 epilog="Run `python -m s2o_compile COMMAND --help` for a "
                                        "command's options.")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="{" + ",".join(COMMANDS) + "}")
    for name, module in COMMANDS.items():
        doc = module.__doc__.split("\n\n")[0]
        p = sub.add_parser(name, help=getattr(module, "HELP", doc), description=module.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(command=module.command, parser=p)
    args = ap.parse_args(argv)
    return args.command(args.parser, args)


if __name__ == "__main__":
    sys.exit(main())
