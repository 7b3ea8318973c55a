"""Redraw `docs/images/demo_seeds.png`, the per-seed plot of docs/results.md, from `hour-llava demo` output folders.

    for seed in 0 1 2 3 4; do hour-llava demo --seed $seed --output-dir /tmp/demo$seed; done
    python docs/images/demo_seeds.py /tmp/demo0 /tmp/demo1 /tmp/demo2 /tmp/demo3 /tmp/demo4 docs/images/demo_seeds.png

Each folder's `seed*/result.json` holds that run's answers; the bars are read from them, in the order given.
"""

import argparse
from pathlib import Path

from hour_llava.demo.experiment import load_seed_result
from hour_llava.demo.report import plot_seed_accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demo_dirs", nargs="+", type=Path, help="output folders of `hour-llava demo`, one per seed")
    parser.add_argument("output", type=Path, help="the PNG to write")
    args = parser.parse_args()
    results = []
    for folder in args.demo_dirs:
        found = sorted(folder.glob("seed*/result.json"))
        if not found:
            parser.error(f"{folder}: no seed*/result.json (is it an `hour-llava demo --output-dir`?)")
        results += [load_seed_result(path) for path in found]
    print(plot_seed_accuracy(results, args.output))


if __name__ == "__main__":
    main()
