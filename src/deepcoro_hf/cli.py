"""The `deepcoro` command line.

Each subcommand lives in the module that owns its concern and exposes two functions:
`add_arguments(parser: argparse.ArgumentParser) -> None` and `run(args: argparse.Namespace) -> int`.
Only the chosen subcommand's module is imported, so `deepcoro --help` stays fast and a subcommand never pays for
the imports of another.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# name -> (module, one-line description). Modules are imported only when their command runs.
COMMANDS: dict[str, tuple[str, str]] = {
    "phantoms": ("deepcoro_hf.phantoms", "write synthetic angiography studies (DICOM + manifest) with known labels"),
}


def _top_parser() -> argparse.ArgumentParser:
    width = max(len(name) for name in COMMANDS)
    listing = "\n".join(f"  {name.ljust(width)}  {help_}" for name, (_, help_) in COMMANDS.items())
    parser = argparse.ArgumentParser(
        prog="deepcoro",
        description="DeepCORO-CLIP for coronary angiography: data, training, evaluation and inference.",
        epilog=f"commands:\n{listing}\n\nRun `deepcoro COMMAND --help` for the options of one command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=sorted(COMMANDS), metavar="COMMAND", help="one of the commands below")
    parser.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def build_parser(command: str) -> argparse.ArgumentParser:
    """Parser of one subcommand (imports its module)."""
    module_name, help_ = COMMANDS[command]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"deepcoro {command}", description=help_)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    module.add_arguments(parser)
    parser.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    top = _top_parser().parse_args(argv)
    parser = build_parser(top.command)
    args = parser.parse_args(top.args)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print(f"deepcoro {top.command}: interrupted", file=sys.stderr)
        return 130
    except (OSError, ValueError, RuntimeError, KeyError) as err:
        # One clear line for the user; the traceback only with --verbose.
        if args.verbose:
            logging.getLogger("deepcoro_hf").exception("command failed")
        message = str(err) or err.__class__.__name__
        print(f"deepcoro {top.command}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
