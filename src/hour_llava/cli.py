"""The `hour-llava` command. Each subcommand lives in `hour_llava.commands.<name>`, imported only when it runs."""

import argparse
import importlib
import sys


# name -> module defining `HELP: str`, `add_arguments(parser)` and `run(args) -> int`
SUBCOMMANDS = {
    "app": "hour_llava.commands.app",
    "ask": "hour_llava.commands.ask",
    "convert": "hour_llava.commands.convert",
    "demo": "hour_llava.commands.demo",
    "extract-features": "hour_llava.commands.extract_features",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hour-llava", description="Hour-LLaVA: ask, convert, train and demo.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, module_name in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        subparser = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(subparser)
        subparser.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args) or 0


if __name__ == "__main__":
    sys.exit(main())
