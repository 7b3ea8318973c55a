# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""Where MemAug looked: its cross-attention over a video's timeline, from the model's public `video_outputs`.

`HourLlavaForConditionalGeneration.forward(..., output_attentions=True)` reports, per video, the share of MemAug's
cross-attention landing on each decoded frame (`video_outputs.memory_attention`) and the frames temporal forgetting
kept for the language model (`video_outputs.kept_frame_indices`). This module turns them into plot data on the
video's time axis and draws the plot the app shows under each answer: the attention curve, the most-attended frames
as thumbnails, and the kept frames marked on the same axis.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image


NO_MEMAUG = "This model has no MemAug: its language model sees only the kept frames."

@dataclass
class AttentionTimeline:
    """One answer's MemAug attention over the timeline of its video.

    Attributes:
        timestamps: `(T,)` seconds of each decoded frame from the first one.
        kept_frames: indices (into the `T` frames, sorted) that temporal forgetting kept for the language model.
        attention: `(T,)` share of MemAug's cross-attention on each frame (sums to 1), or None for a model without
            MemAug (`memaug_depth=0`), whose language model sees the kept frames as they are.
        top_frames: the most-attended frames, most attended first (empty without `attention`).
        note: why there is no attention, when the model has MemAug but it was not measured.
    """

    timestamps: np.ndarray
    kept_frames: np.ndarray
    attention: np.ndarray | None
    top_frames: list[int]
    note: str | None = None

    @classmethod
    def from_video_outputs(
        cls, video_outputs, timestamps: Sequence[float], video_index: int = 0, top_k: int = 4
    ) -> "AttentionTimeline":
        """Plot data of video `video_index` of a forward pass's `video_outputs` (a `HourLlavaVideoOutput`), whose
        frames were decoded at `timestamps` seconds (`EncodedVideo.metadata.timestamps`)."""
        timestamps = np.asarray(timestamps, dtype=np.float64)
        kept = video_outputs.kept_frame_indices[video_index].detach().cpu().numpy().astype(np.int64)
        check_frame_indices("kept_frame_indices", kept, len(timestamps))
        attention = None
        if video_outputs.memory_attention is not None:
            attention = video_outputs.memory_attention[video_index].detach().float().cpu().numpy()
            if attention.shape != timestamps.shape:
                raise ValueError(
                    f"video_outputs.memory_attention[{video_index}] has shape {attention.shape}, but the video has "
                    f"{len(timestamps)} decoded frames; it must hold one share per frame."
                )
        return cls(timestamps, kept, attention, most_attended(attention, top_k))

    @property
    def has_attention(self) -> bool:
        return self.attention is not None

    def peak_second(self) -> float | None:
        """Time of the most-attended frame, or None without attention."""
        return float(self.timestamps[self.top_frames[0]]) if self.top_frames else None


def check_frame_indices(name: str, indices: np.ndarray, num_frames: int) -> None:
    outside = indices[(indices < 0) | (indices >= num_frames)]
    if outside.size:
        raise ValueError(
            f"video_outputs.{name} holds frame {int(outside[0])}, outside the video's {num_frames} decoded frames."
        )


def most_attended(attention: np.ndarray | None, top_k: int) -> list[int]:
    """Indices of the `top_k` largest shares, largest first (ties: the earlier frame first)."""
    if attention is None or top_k <= 0:
        return []
    order = np.argsort(-attention, kind="stable")
    return [int(i) for i in order[:top_k]]


# ----------------------------------------------------------------------------------------------------------------------
# Drawing
# ----------------------------------------------------------------------------------------------------------------------
def render_timeline(
    timeline: AttentionTimeline,
    thumbnails: torch.Tensor | np.ndarray | None = None,
    title: str | None = None,
    dpi: int = 100,
) -> Image.Image:
    """The timeline plot as an image: thumbnails of the most-attended frames above, and on one time axis the
    attention curve, those frames numbered, and the frames forgetting kept as ticks.

    `thumbnails` are `(T, h, w, 3)` uint8 frames (one per decoded frame), e.g. `ChatVideo.thumbnails`. Drawn with
    matplotlib's object API (no pyplot state), so calls from several threads do not interfere.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shown = timeline.top_frames if thumbnails is not None else []
    figure = Figure(figsize=(10, 4.4 if shown else 2.6), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    if shown:
        thumbs_row, plot_row = figure.subfigures(2, 1, height_ratios=[1.1, 1.6])
        draw_thumbnails(thumbs_row, timeline, np.asarray(thumbnails))
    else:
        plot_row = figure
    axes = plot_row.subplots()
    draw_timeline(axes, timeline)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.canvas.draw()
    return Image.fromarray(np.asarray(figure.canvas.buffer_rgba())[..., :3].copy())


def draw_thumbnails(subfigure, timeline: AttentionTimeline, thumbnails: np.ndarray) -> None:
    axes = subfigure.subplots(1, len(timeline.top_frames), squeeze=False)[0]
    for rank, (ax, frame) in enumerate(zip(axes, timeline.top_frames), start=1):
        ax.imshow(thumbnails[frame])
        ax.set_xticks([])
        ax.set_yticks([])
        share = 100 * float(timeline.attention[frame])
        ax.set_title(f"#{rank}  {timeline.timestamps[frame]:.0f} s  ({share:.1f}%)", fontsize=9)


def draw_timeline(axes, timeline: AttentionTimeline) -> None:
    seconds = timeline.timestamps
    if timeline.has_attention:
        percent = 100 * timeline.attention
        axes.fill_between(seconds, percent, step="mid", alpha=0.3, color="tab:blue")
        axes.step(seconds, percent, where="mid", color="tab:blue", linewidth=1, label="MemAug cross-attention")
        for rank, frame in enumerate(timeline.top_frames, start=1):
            axes.annotate(
                f"#{rank}", (seconds[frame], percent[frame]), textcoords="offset points", xytext=(0, 4),
                ha="center", fontsize=8, color="tab:red",
            )
        axes.plot(seconds[timeline.top_frames], percent[timeline.top_frames], "o", color="tab:red", markersize=4)
        axes.set_ylabel("attention (%)")
        axes.set_ylim(0, max(float(percent.max()) * 1.25, 1e-6))
    else:
        axes.set_yticks([])
        axes.text(0.5, 0.6, timeline.note or NO_MEMAUG, transform=axes.transAxes, ha="center", fontsize=9, wrap=True)
    kept = seconds[timeline.kept_frames]
    axes.plot(kept, np.zeros_like(kept), "|", color="dimgray", markersize=12, markeredgewidth=1.2,
              transform=axes.get_xaxis_transform(), clip_on=False,
              label=f"kept by forgetting ({len(kept)} of {len(seconds)} frames)")
    axes.set_xlabel("video time (s)")
    span = float(seconds[-1] - seconds[0]) if len(seconds) > 1 else 1.0
    axes.set_xlim(float(seconds[0]) - 0.02 * span, float(seconds[-1]) + 0.02 * span)
    axes.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncols=2, fontsize=8, frameon=False)


__all__ = ["AttentionTimeline", "most_attended", "render_timeline"]
