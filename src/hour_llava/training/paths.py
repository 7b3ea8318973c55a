# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""Where a sample's video lives: `<video_root>/<data_source>/<video>`, as the authors lay out their data.

A dataset row names its video by a path relative to a root (and a `data_source` folder). The path is normalised
lexically and must stay inside its root: a row cannot make training read `/etc/passwd` or `../../other_dataset`.
Symlinks *inside* a root are trusted (datasets often link their video folders to other disks).
"""

import os
import posixpath
from dataclasses import dataclass, field


class VideoPathError(ValueError):
    """A row's video path is absolute, escapes its root, or has no root to resolve against."""


def _relative_inside(path: str, what: str) -> str:
    """`path` normalised to a POSIX relative path, or a `VideoPathError` if it is absolute or climbs out with `..`."""
    normalised = posixpath.normpath(path.replace("\\", "/"))
    if posixpath.isabs(normalised) or os.path.isabs(path) or os.path.splitdrive(path)[0]:
        raise VideoPathError(f"{what} {path!r} is absolute; it must be relative to its video root.")
    if normalised == ".." or normalised.startswith("../"):
        raise VideoPathError(f"{what} {path!r} escapes its video root.")
    return "" if normalised == "." else normalised


@dataclass
class VideoRoots:
    """The folders videos are resolved against.

    Args:
        root: folder holding one subfolder per `data_source` (`<root>/<data_source>/<video>`), the authors' layout.
        per_source: `data_source -> folder` for sources stored elsewhere (`<folder>/<video>`); wins over `root`.
    """

    root: str | None = None
    per_source: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_strings(cls, root: str | None = None, per_source: list[str] | None = None) -> "VideoRoots":
        """Build from command-line values: `per_source` items are `data_source=folder`."""
        mapping = {}
        for item in per_source or []:
            source, sep, folder = item.partition("=")
            if not sep or not folder:
                raise ValueError(f"--video_roots item {item!r} is not of the form data_source=/path/to/videos.")
            mapping[source] = folder
        return cls(root=root, per_source=mapping)

    def video_key(self, video: str, data_source: str = "") -> str:
        """The video's path relative to the roots, `<data_source>/<video>`: its identity, also in the feature cache."""
        relative = _relative_inside(video, "Video path")
        if not relative:
            raise VideoPathError(f"Video path {video!r} names its root folder, not a video file.")
        source = _relative_inside(data_source or "", "data_source")
        return posixpath.join(source, relative) if source else relative

    def resolve(self, video: str, data_source: str = "") -> str:
        """The absolute path of `video` (of `data_source`), checked to stay inside its root."""
        key = self.video_key(video, data_source)
        if data_source in self.per_source:
            return os.path.join(os.path.abspath(self.per_source[data_source]), _relative_inside(video, "Video path"))
        if self.root is None:
            raise VideoPathError(
                f"No video root for data_source {data_source!r} (video {video!r}): pass a video root "
                f"(`--video_root`) or `--video_roots {data_source or '<data_source>'}=/path`."
            )
        return os.path.join(os.path.abspath(self.root), key)


__all__ = ["VideoPathError", "VideoRoots"]
