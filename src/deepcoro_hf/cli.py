"""The `deepcoro` command line.

Each subcommand lives in the module that owns its concern and exposes either two functions,
`add_arguments(parser: argparse.ArgumentParser) -> None` and `run(args: argparse.Namespace) -> int`, or — the training
entry points, which parse a config file plus overrides themselves — `main(argv: list[str]) -> int`.
Only the chosen subcommand's module is imported, so `deepcoro --help` stays fast and a subcommand never pays for
the imports of another.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from huggingface_hub.errors import StrictDataclassError

# name -> (module, one-line description). Modules are imported only when their command runs.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("deepcoro_hf.demo", "the whole flow offline: phantom DICOM study in, per-segment report out"),
    "phantoms": ("deepcoro_hf.phantoms", "write synthetic angiography studies (DICOM + manifest) with known labels"),
    "pretrain": ("deepcoro_hf.train.pretrain", "contrastive video-report pretraining (--config FILE [overrides])"),
    "finetune": ("deepcoro_hf.train.finetune", "segment fine-tuning: frozen, partly unfrozen or LoRA (--config FILE)"),
    "evaluate": ("deepcoro_hf.train.evaluate", "the paper's tables, curves and retrieval metrics for a saved model"),
    "convert": ("deepcoro_hf.conversion", "convert an original research checkpoint (.pt) into a Hugging Face folder"),
    "push": ("deepcoro_hf.hub", "upload a saved model folder with its model card (model-index from evaluate) to the Hub"),
    "predict": ("deepcoro_hf.inference", "segment stenosis, CTO, thrombus, calcification and a report for study folders"),
    "embed": ("deepcoro_hf.inference", "study and video embeddings of study folders (.npz or .parquet)"),
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
    module = importlib.import_module(COMMANDS[top.command][0])
    verbose = "-v" in top.args or "--verbose" in top.args
    if hasattr(module, "main"):  # parses its own arguments (config file + overrides)
        sys.argv[0] = f"deepcoro {top.command}"  # what its parser shows as the program name
        run = lambda: module.main([a for a in top.args if a not in ("-v", "--verbose")])  # noqa: E731
    else:
        args = build_parser(top.command).parse_args(top.args)
        logging.basicConfig(
            level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
        )
        run = lambda: args._run(args)  # noqa: E731
    try:
        return int(run() or 0)
    except KeyboardInterrupt:
        print(f"deepcoro {top.command}: interrupted", file=sys.stderr)
        return 130
    except (OSError, ValueError, RuntimeError, KeyError, StrictDataclassError) as err:
        # One clear line for the user; the traceback only with --verbose.
        if verbose:
            logging.getLogger("deepcoro_hf").exception("command failed")
        message = " ".join(str(err).split()) or err.__class__.__name__
        print(f"deepcoro {top.command}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
