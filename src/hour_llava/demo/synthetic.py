# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""Synthetic long videos with checkable questions, written as a VideoMarathon-format dataset.

Each video is a small (32x32) clip at one frame per second, so that 1-FPS sampling sees every frame. Three kinds of
events happen at random times, one per region of the frame:

* a **square** (top left) that changes colour at one third and two thirds of the video;
* **balls** (bottom right) that appear one to four times, each for 6-10 seconds, sliding while visible;
* a **flash**: one single frame filled with a colour between two white bars (the "needle").

Every video gets one question of each VideoMarathon-style task type whose answer it determines:

| task | question | answer |
|---|---|---|
| `needle` | What colour was the one-second flash? | a colour |
| `attribute` | What colour was the square at the {start, middle, end} of the video? | a colour |
| `order` | Which ball appeared first, the {a} one or the {b} one? | a colour |
| `count` | How many times did a ball appear? | one ... four |

(`order` is asked only when the first two balls differ in colour.) Each question records the seconds that hold its
evidence, so the evaluation can tell whether forgetting dropped the answer frame.
"""

import json
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..video_writing import write_video


# The six saturated corners of the RGB cube: as far apart as colours get, in pixels and (measured over seeds 0-4, see
# docs/results.md) in the features of the demo's frozen random vision tower. With softer colours, the trained model
# mixed up the closest pair (blue and cyan) on most of the dropped-frame flashes it missed.
COLOURS = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "magenta": (255, 0, 255),
    "cyan": (0, 255, 255),
}
SQUARE_COLOURS = ("red", "green", "blue", "yellow")
NUMBER_WORDS = ("one", "two", "three", "four")
TIMES_OF_VIDEO = ("start", "middle", "end")
TASKS = ("needle", "attribute", "order", "count")
QUESTION_TEMPLATES = {
    "needle": "What colour was the one-second flash?",
    "attribute": "What colour was the square at the {when} of the video?",
    "order": "Which ball appeared first, the {first} one or the {second} one?",
    "count": "How many times did a ball appear?",
}
# The number of possible answers of each task, for the chance level of a model that guesses uniformly.
NUM_ANSWERS = {"needle": len(COLOURS), "attribute": len(SQUARE_COLOURS), "order": 2, "count": len(NUMBER_WORDS)}
DATA_SOURCE = "synthetic"
FRAME_SIZE = 32
BAR_HEIGHT = 3  # the white bars that frame the flash
BALL_SIZE = 8
SQUARE_SIZE = 8


@dataclass
class QuestionAnswer:
    task: str
    question: str
    answer: str
    evidence_seconds: list[int]  # the frames (= seconds) that show the answer


@dataclass
class Ball:
    colour: str
    start: int
    duration: int


@dataclass
class SyntheticVideo:
    """The events of one synthetic video; `frames()` renders it and `questions()` asks about it."""

    name: str
    seconds: int
    square_colours: tuple[str, str, str]
    balls: list[Ball]
    flash_second: int
    flash_colour: str
    texture_seed: int
    questions_asked: list[QuestionAnswer] = field(default_factory=list)

    def square_phase(self, second: int) -> int:
        """0, 1 or 2: the third of the video `second` falls in (the square's colour changes between them)."""
        return min(2, 3 * second // self.seconds)

    def square_colour_at(self, second: int) -> str:
        return self.square_colours[self.square_phase(second)]

    def frames(self) -> Iterator[np.ndarray]:
        texture = np.random.default_rng(self.texture_seed).integers(40, 80, (FRAME_SIZE, FRAME_SIZE, 3))
        for second in range(self.seconds):
            frame = texture.astype(np.uint8).copy()
            half = FRAME_SIZE // 2
            frame[:SQUARE_SIZE, :SQUARE_SIZE] = COLOURS[self.square_colour_at(second)]
            for ball in self.balls:
                if ball.start <= second < ball.start + ball.duration:
                    x = half + 2 + (second - ball.start) % (half - BALL_SIZE - 2)
                    frame[half + 4 : half + 4 + BALL_SIZE, x : x + BALL_SIZE] = COLOURS[ball.colour]
            if second == self.flash_second:
                frame[:] = COLOURS[self.flash_colour]
                frame[:BAR_HEIGHT] = 255
                frame[-BAR_HEIGHT:] = 255
            yield frame

    def questions(self, rng: random.Random) -> list[QuestionAnswer]:
        """One question per task type this video can answer (the time asked about by `attribute` is drawn)."""
        when = rng.choice(TIMES_OF_VIDEO)
        index = TIMES_OF_VIDEO.index(when)
        qas = [
            QuestionAnswer("needle", QUESTION_TEMPLATES["needle"], self.flash_colour, [self.flash_second]),
            QuestionAnswer(
                "attribute",
                QUESTION_TEMPLATES["attribute"].format(when=when),
                self.square_colours[index],
                [s for s in range(self.seconds) if self.square_phase(s) == index],
            ),
        ]
        first, second = self.balls[:2] if len(self.balls) >= 2 else (None, None)
        if first is not None and first.colour != second.colour:
            named = [first.colour, second.colour]
            rng.shuffle(named)
            question = QUESTION_TEMPLATES["order"].format(first=named[0], second=named[1])
            qas.append(QuestionAnswer("order", question, first.colour, [first.start, second.start]))
        qas.append(
            QuestionAnswer(
                "count", QUESTION_TEMPLATES["count"], NUMBER_WORDS[len(self.balls) - 1], [b.start for b in self.balls]
            )
        )
        return qas


def random_video(name: str, seconds: int, rng: random.Random) -> SyntheticVideo:
    """Events at random times: the balls in disjoint, randomly placed slots so they never overlap."""
    num_balls = rng.randint(1, len(NUMBER_WORDS))
    slot_length = seconds / (2 * num_balls)
    slots = sorted(rng.sample(range(2 * num_balls), num_balls))
    balls = []
    for slot in slots:
        duration = min(rng.randint(6, 10), max(1, int(slot_length) - 1))
        start = int(slot * slot_length) + rng.randint(0, max(0, int(slot_length) - duration - 1))
        balls.append(Ball(rng.choice(list(COLOURS)), start, duration))
    video = SyntheticVideo(
        name=name,
        seconds=seconds,
        square_colours=tuple(rng.choice(SQUARE_COLOURS) for _ in range(3)),
        balls=balls,
        flash_second=rng.randrange(seconds),
        flash_colour=rng.choice(list(COLOURS)),
        texture_seed=rng.randrange(2**31),
    )
    video.questions_asked = video.questions(rng)
    return video


@dataclass(frozen=True)
class SplitSpec:
    """How many videos of which lengths (seconds, inclusive range) a split has."""

    name: str
    num_videos: int
    min_seconds: int
    max_seconds: int


def make_videos(spec: SplitSpec, rng: random.Random) -> list[SyntheticVideo]:
    return [
        random_video(f"{spec.name}/{spec.name}_{i:04d}.mp4", rng.randint(spec.min_seconds, spec.max_seconds), rng)
        for i in range(spec.num_videos)
    ]


def write_videos(videos: list[SyntheticVideo], video_root: Path, desc: str = "Writing videos") -> None:
    """Render and encode every video under `video_root/<data_source>/`; files already there are kept (resume)."""
    for video in tqdm(videos, desc=desc, unit="video"):
        path = video_root / DATA_SOURCE / video.name
        if path.is_file():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        write_video(path, video.frames(), fps=1)


def conversation(qas: list[QuestionAnswer]) -> list[dict]:
    """VideoMarathon's `conversations`: `<image>` opens the first human turn."""
    turns = []
    for i, qa in enumerate(qas):
        prefix = "<image>\n" if i == 0 else ""
        turns.append({"from": "human", "value": prefix + qa.question})
        turns.append({"from": "gpt", "value": qa.answer})
    return turns


def training_samples(
    videos: list[SyntheticVideo], rows_per_video: int, rng: random.Random, tasks: tuple[str, ...] = TASKS
) -> list[dict]:
    """`rows_per_video` VideoMarathon samples per video, each a random subset (1 to all) of its questions of `tasks`
    in a random order, so a model cannot learn an answer from the turn it sits in."""
    samples = []
    for video in videos:
        questions = [qa for qa in video.questions_asked if qa.task in tasks]
        for copy in range(rows_per_video):
            qas = rng.sample(questions, rng.randint(1, len(questions)))
            samples.append(_sample(f"{Path(video.name).stem}_{copy}", video, qas))
    rng.shuffle(samples)
    return samples


def evaluation_samples(videos: list[SyntheticVideo], tasks: tuple[str, ...] = TASKS) -> list[dict]:
    """One single-question sample per (video, task of `tasks`), with the task and the evidence seconds kept for
    scoring."""
    samples = []
    for video in videos:
        for qa in (qa for qa in video.questions_asked if qa.task in tasks):
            sample = _sample(f"{Path(video.name).stem}_{qa.task}", video, [qa])
            sample.update(task=qa.task, seconds=video.seconds, **{"evidence_seconds": qa.evidence_seconds})
            samples.append(sample)
    return samples


def _sample(sample_id: str, video: SyntheticVideo, qas: list[QuestionAnswer]) -> dict:
    return {"id": sample_id, "video": video.name, "data_source": DATA_SOURCE, "conversations": conversation(qas)}


def write_text(path: Path, text: str) -> Path:
    """Write atomically: an interrupted run never leaves a half-written dataset, result or report behind."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    partial.replace(path)
    return path


def write_json(path: Path, payload: list | dict) -> Path:
    return write_text(path, json.dumps(payload, indent=1))


def write_scene_descriptions(path: Path, videos: list[SyntheticVideo]) -> Path:
    """What happens in each video, for whoever wants to check an answer by hand."""
    return write_json(path, [asdict(video) for video in videos])


def corpus() -> list[str]:
    """Every question and answer text of the demo, for its tokenizer's byte-pair merges."""
    texts = [template.format(when="middle", first="red", second="blue") for template in QUESTION_TEMPLATES.values()]
    texts += [f"the {when} of the video" for when in TIMES_OF_VIDEO]
    return texts + list(COLOURS) + list(NUMBER_WORDS)


__all__ = [
    "COLOURS",
    "DATA_SOURCE",
    "NUM_ANSWERS",
    "TASKS",
    "QuestionAnswer",
    "SplitSpec",
    "SyntheticVideo",
    "corpus",
    "evaluation_samples",
    "make_videos",
    "random_video",
    "training_samples",
    "write_json",
    "write_text",
    "write_scene_descriptions",
    "write_videos",
]
