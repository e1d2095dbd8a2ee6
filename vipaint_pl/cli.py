"""The ``vipaint`` command."""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="vipaint",
        description="Inpainting and linear inverse problems with pretrained diffusion priors (VIPaint and baselines).",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    args = parser.parse_args(argv)
    if args.version:
        from . import __version__

        print(__version__)
    return 0


if __name__ == "__main__":
    sys.exit(main())
