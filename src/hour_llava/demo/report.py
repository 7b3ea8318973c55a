# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""The demo's report: accuracy table (markdown), plots (PNG) and a `results.md` that ties them together."""

import statistics
from collections.abc import Sequence
from pathlib import Path

from .experiment import MODEL_VARIANTS, DemoSettings, SeedResult, first_word
from .synthetic import NUM_ANSWERS, TASKS, write_text


# Columns of the table: name -> which scored answers it averages.
COLUMNS = {
    "needle, frame dropped": lambda r: r["task"] == "needle" and r["dropped_by_forgetting"],
    "needle, frame kept": lambda r: r["task"] == "needle" and not r["dropped_by_forgetting"],
    **{task: (lambda r, task=task: r["task"] == task) for task in TASKS},
}
# Plots go to this subfolder of the output folder (as in docs/, so the report can be copied there as it is).
IMAGES = "images"
CHANCE = {"needle, frame dropped": 1 / NUM_ANSWERS["needle"], "needle, frame kept": 1 / NUM_ANSWERS["needle"]}
CHANCE.update({task: 1 / NUM_ANSWERS[task] for task in TASKS})
# The demo's target, seed by seed: Hour-LLaVA at least this on dropped-frame flashes ...
TARGET_ACCURACY = 0.85
# ... while the model without MemAug stays within this of chance.
TARGET_MARGIN_OVER_CHANCE = 0.10


def trained_variants(results: Sequence[SeedResult]) -> list:
    """The models these results hold, in `MODEL_VARIANTS` order (the default run leaves `uniform-64` out)."""
    return [variant for variant in MODEL_VARIANTS if all(variant.name in r.records for r in results)]


def accuracy(records: list[dict], column: str) -> tuple[float, int]:
    """Accuracy and number of questions of one column."""
    selected = [r["correct"] for r in records if COLUMNS[column](r)]
    return (sum(selected) / len(selected) if selected else float("nan")), len(selected)


def asked_columns(results: Sequence[SeedResult]) -> list[str]:
    """The columns with at least one held-out question (the default run asks only for the flash)."""
    first = MODEL_VARIANTS[0].name
    return [column for column in COLUMNS if any(accuracy(r.records[first], column)[1] for r in results)]


def accuracies(results: Sequence[SeedResult]) -> dict[str, dict[str, list[float]]]:
    """model -> column -> one accuracy per seed."""
    columns = asked_columns(results)
    return {
        variant.name: {column: [accuracy(r.records[variant.name], column)[0] for r in results] for column in columns}
        for variant in trained_variants(results)
    }


def _cell(values: list[float]) -> str:
    if len(values) == 1:
        return f"{100 * values[0]:.0f}"
    return f"{100 * statistics.mean(values):.0f} ± {100 * statistics.stdev(values):.0f}"


def markdown_table(results: Sequence[SeedResult]) -> str:
    """Accuracy (%) per model and column; with several seeds, mean ± standard deviation over seeds."""
    table = accuracies(results)
    columns = asked_columns(results)
    counts = [sum(accuracy(r.records[MODEL_VARIANTS[0].name], c)[1] for r in results) for c in columns]
    lines = [
        "| model | " + " | ".join(columns) + " |",
        "|---|" + "---:|" * len(columns),
        "| questions (all seeds) | " + " | ".join(str(n) for n in counts) + " |",
    ]
    for variant in trained_variants(results):
        cells = [_cell(table[variant.name][column]) for column in columns]
        lines.append(f"| `{variant.name}`: {variant.description} | " + " | ".join(cells) + " |")
    lines.append("| chance | " + " | ".join(f"{100 * CHANCE[c]:.0f}" for c in columns) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------------
# Plots
# ----------------------------------------------------------------------------------------------------------------------
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, figure, axes, path: Path, **legend) -> Path:
    axes.legend(**({"loc": "upper right"} | legend), fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def _grouped_positions(groups: int, member: int, members: int, width: float) -> list[float]:
    """x of bar `member` (of `members` side by side, each `width` wide) in each of `groups` groups centred on 0, 1..."""
    return [group + (member - (members - 1) / 2) * width for group in range(groups)]


def plot_accuracy(results: Sequence[SeedResult], path: Path) -> Path:
    """Grouped bars: accuracy per column and model (error bars: standard deviation over seeds), chance as ticks."""
    plt = _pyplot()
    table = accuracies(results)
    columns = asked_columns(results)
    variants = trained_variants(results)
    width = 0.8 / len(variants)
    figure, axes = plt.subplots(figsize=(10, 4.2))
    for i, variant in enumerate(variants):
        values = [table[variant.name][c] for c in columns]
        means = [100 * statistics.mean(v) for v in values]
        spreads = [100 * statistics.stdev(v) if len(v) > 1 else 0 for v in values]
        positions = _grouped_positions(len(columns), i, len(variants), width)
        axes.bar(positions, means, width, yerr=spreads if len(results) > 1 else None, capsize=3, label=variant.name)
    for j, column in enumerate(columns):
        axes.hlines(100 * CHANCE[column], j - 0.45, j + 0.45, colors="black", linestyles="dotted")
    axes.set_xticks(range(len(columns)), [column.replace(", ", "\n") for column in columns])
    axes.set_ylabel("accuracy (%)")
    axes.set_ylim(0, 105)
    seeds = ", ".join(str(r.seed) for r in results)
    axes.set_title(f"Held-out questions by task (dotted: chance; seeds {seeds})")
    return _save(plt, figure, axes, path)


def plot_seed_accuracy(results: Sequence[SeedResult], path: Path) -> Path:
    """Per seed, each model's accuracy on dropped-frame flashes beside the target's two lines: one seed's bars are
    what a newcomer running `hour-llava demo` once gets, which a mean over seeds would hide."""
    plt = _pyplot()
    column = "needle, frame dropped"
    variants = trained_variants(results)
    width = 0.8 / len(variants)
    chance = CHANCE[column]
    figure, axes = plt.subplots(figsize=(8, 3.4))
    table = accuracies(results)
    for i, variant in enumerate(variants):
        positions = _grouped_positions(len(results), i, len(variants), width)
        values = [100 * value for value in table[variant.name][column]]
        axes.bar(positions, values, width, label=variant.name)
    axes.axhline(100 * TARGET_ACCURACY, color="tab:green", linestyle="--", label="target for hour-llava (at least)")
    axes.axhline(
        100 * (chance + TARGET_MARGIN_OVER_CHANCE), color="tab:red", linestyle="--",
        label="target for the others (at most)",
    )
    axes.axhline(100 * chance, color="black", linestyle="dotted", label="chance")
    axes.set_xticks(range(len(results)), [f"seed {result.seed}" for result in results])
    axes.set_ylabel("accuracy (%)")
    axes.set_ylim(0, 105)
    axes.set_title("Flash questions whose frame forgetting dropped, one run per seed")
    return _save(plt, figure, axes, path, loc="center left", bbox_to_anchor=(1.0, 0.5))


def plot_timeline(timeline: dict, path: Path) -> Path:
    """Where MemAug's cross-attention went, frame by frame, beside the flash and the frames forgetting kept."""
    plt = _pyplot()
    attention = timeline["attention"]
    figure, axes = plt.subplots(figsize=(10, 3.2))
    axes.plot(range(len(attention)), attention, color="tab:blue", linewidth=1.2, label="cross-attention share")
    axes.axvline(timeline["flash_second"], color="tab:red", linestyle="--", label=f"flash ({timeline['answer']})")
    bottom = min(attention)
    axes.plot(timeline["kept_seconds"], [bottom] * len(timeline["kept_seconds"]), "|", color="gray",
              markersize=8, label="frames kept by forgetting")
    axes.set_xlabel("second of the video (memory frame)")
    axes.set_ylabel("share of attention")
    axes.set_title(f"{timeline['id']}: \"{timeline['question']}\" (flash frame dropped by forgetting)")
    return _save(plt, figure, axes, path)


def plot_training_loss(results: Sequence[SeedResult], path: Path) -> Path:
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(8, 3.2))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for colour, variant in zip(colours, trained_variants(results)):
        for k, result in enumerate(results):
            history = result.training[variant.name].log_history
            axes.plot([h["step"] for h in history], [h["loss"] for h in history], color=colour, alpha=0.8,
                      linewidth=1, label=variant.name if k == 0 else None)
    axes.set_xlabel("step")
    axes.set_ylabel("training loss")
    axes.set_yscale("log")
    axes.set_title("Training loss (short videos first, then long ones)")
    return _save(plt, figure, axes, path)


# ----------------------------------------------------------------------------------------------------------------------
# results.md
# ----------------------------------------------------------------------------------------------------------------------
def write_report(results: Sequence[SeedResult], settings: DemoSettings, output_dir: Path, command: str) -> Path:
    """Write the plots and `results.md` into `output_dir`; return the markdown file's path."""
    images = output_dir / IMAGES
    images.mkdir(parents=True, exist_ok=True)
    plot_accuracy(results, images / "demo_accuracy_by_task.png")
    plot_training_loss(results, images / "demo_training_loss.png")
    timeline = next((r.timeline for r in results if r.timeline), None)
    peaks = next((r.flash_attention for r in results if r.flash_attention), None)
    if timeline is not None:
        plot_timeline(timeline, images / "demo_memaug_attention_timeline.png")
    sections = [
        "# Hour-LLaVA demo: does the memory recover what forgetting dropped?",
        f"Command: `{command}`",
        _setup_text(settings, results),
        "## Accuracy (%) on held-out videos",
        markdown_table(results),
        _reading_notes(results),
        f"![accuracy by task]({IMAGES}/demo_accuracy_by_task.png)",
        "## Where MemAug looked",
        _timeline_text(timeline, peaks),
        "## Training",
        _training_text(results),
        f"![training loss]({IMAGES}/demo_training_loss.png)",
        _reload_text(results),
    ]
    return write_text(output_dir / "results.md", "\n\n".join(s for s in sections if s) + "\n")


def _setup_text(settings: DemoSettings, results: Sequence[SeedResult]) -> str:
    phases = ", then ".join(
        f"{phase.videos.num_videos} videos of {phase.videos.min_seconds}-{phase.videos.max_seconds} s "
        f"({phase.rows_per_video} sample{'s' if phase.rows_per_video > 1 else ''} each)"
        for phase in settings.curriculum
    )
    test = settings.held_out
    return (
        f"Seeds {', '.join(str(r.seed) for r in results)}; per seed, new videos and new initial weights. Training: "
        f"{phases}; batch {settings.batch_size}, one pass in that order, learning rate schedule "
        f"`{settings.lr_scheduler_type}` after {settings.warmup_steps} warm-up steps. Questions trained and asked: "
        f"{', '.join(settings.tasks)}. Held out: {test.num_videos} other videos of {test.min_seconds}-"
        f"{test.max_seconds} s, one question per task each, answered through `pipeline(\"video-text-to-text\")` with "
        "greedy decoding; an answer is right when its first word is the expected one. The models share one frozen "
        "random vision tower and are trained by `HourLlavaSFTTrainer` (stage 3) with the same rows, order, step count "
        f"and learning rates ({settings.learning_rate:g}; MemAug {settings.memaug_learning_rate:g})."
        + (
            ""
            if settings.add_time_instruction
            else " The processor leaves out the reference time instruction (`add_time_instruction=False`): between "
            "the video and the question it held back a language model this small for longer than the demo trains."
        )
    )


def _reading_notes(results: Sequence[SeedResult]) -> str:
    table = accuracies(results)
    dropped = {name: statistics.mean(values["needle, frame dropped"]) for name, values in table.items()}
    memaug, plain = dropped["hour-llava"], dropped["no-memaug"]
    chance = CHANCE["needle, frame dropped"]
    per_seed = ""
    if len(results) > 1:
        values = table["hour-llava"]["needle, frame dropped"]
        seeds = ", ".join(f"{100 * value:.0f}% (seed {r.seed})" for r, value in zip(results, values))
        per_seed = f" Per seed, Hour-LLaVA's share is {seeds}."
    # The target holds seed by seed, not on the mean: a newcomer runs one seed.
    every_seed = all(
        memaug_seed >= TARGET_ACCURACY and plain_seed <= chance + TARGET_MARGIN_OVER_CHANCE
        for memaug_seed, plain_seed in zip(
            table["hour-llava"]["needle, frame dropped"], table["no-memaug"]["needle, frame dropped"]
        )
    )
    verdict = "meets" if every_seed else "does not meet"
    return (
        "\"needle, frame dropped\" are the flash questions whose one flash frame is not among the frames temporal "
        "forgetting keeps (3 in 4 are dropped), so no decayed token shows it: only the memory repository, through "
        f"MemAug, holds it. There Hour-LLaVA answers {100 * memaug:.0f}% right and the same model without MemAug "
        f"{100 * plain:.0f}% (chance {100 * chance:.0f}%). This run {verdict} the target, on every seed: MemAug at "
        f"85% or more while the model without it stays within 10 points of chance.{per_seed}"
        + (
            " `uniform-64` sees the flash frame only when it is among its 64 frames, which happens for about 64/T of "
            "the videos."
            if "uniform-64" in table
            else ""
        )
    )


def _timeline_text(timeline: dict | None, peaks: dict | None = None) -> str:
    if timeline is None:
        return "No held-out flash question had its frame dropped, so there is no timeline to draw."
    peak = max(range(len(timeline["attention"])), key=timeline["attention"].__getitem__)
    overall = ""
    if peaks and peaks["questions"]:
        overall = (
            f" Over the first {peaks['questions']} held-out flash questions whose frame was dropped (first seed), the "
            f"attention peaks on the flash frame in {peaks['peak_at_flash']} "
            f"({100 * peaks['peak_at_flash'] / peaks['questions']:.0f}%), right answer or not."
        )
    return (
        f"For `{timeline['id']}` (\"{timeline['question']}\", answer {timeline['answer']}), the flash is at second "
        f"{timeline['flash_second']}, a frame forgetting dropped. The curve is the share of MemAug's cross-attention "
        "(decayed-video queries, averaged over blocks and heads) that lands on each frame of the memory repository; "
        f"it peaks at second {peak}.{overall}\n\n"
        f"![MemAug cross-attention timeline]({IMAGES}/demo_memaug_attention_timeline.png)"
    )


def _training_text(results: Sequence[SeedResult]) -> str:
    lines = ["| model | " + " | ".join(f"seed {r.seed}" for r in results) + " |", "|---|" + "---:|" * len(results)]
    for variant in trained_variants(results):
        cells = [f"{r.training[variant.name].seconds:.0f} s" for r in results]
        lines.append(f"| `{variant.name}` | " + " | ".join(cells) + " |")
    return "Training time on this machine (2 CPU cores):\n\n" + "\n".join(lines)


def _reload_text(results: Sequence[SeedResult]) -> str:
    seed = next((r for r in results if r.reload_check), None)
    if seed is None:
        return ""
    check = seed.reload_check
    return (
        "## Save and reload\n\n"
        f"The trained Hour-LLaVA was saved to `{check['directory']}` and reloaded with "
        "`AutoModelForImageTextToText.from_pretrained` and `AutoProcessor.from_pretrained`. Asked "
        f"\"{check['question']}\" about `{Path(check['video']).name}`, it answered **{check['answer']!r}** "
        f"(expected {check['expected']!r}).{_before_saving(seed, check)}"
    )


def _before_saving(seed: SeedResult, check: dict) -> str:
    """The pipeline's answer to the same question before the model was saved: a reload must not change it."""
    record = next((r for r in seed.records.get("hour-llava", []) if r["id"] == check.get("id")), None)
    if record is None:
        return ""
    same = "the same" if first_word(record["prediction"]) == first_word(check["answer"]) else "a different"
    return f" Before saving, the pipeline had answered {record['prediction']!r}: {same} answer."


__all__ = [
    "COLUMNS", "accuracies", "asked_columns", "markdown_table", "plot_accuracy", "plot_seed_accuracy", "plot_timeline",
    "write_report",
]
