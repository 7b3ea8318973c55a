# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""Where a sample's video (or image) lives: `<video_root>/<data_source>/<video>`, as the authors lay out their data.

A dataset row names its video by a path relative to a root (and a `data_source` folder); images are resolved the
same way against their own roots (`ImageRoots`). The path is normalised
lexically and must stay inside its root: a row cannot make training read `/etc/passwd` or `../../other_dataset`.
Symlinks *inside* a root are trusted (datasets often link their video folders to other disks).
"""

import os
import posixpath
from dataclasses import dataclass, field


class VideoPathError(ValueError):
    """A row's video (or image) path is absolute, escapes its root, or has no root to resolve against."""


def _relative_inside(path: str, what: str, media: str = "video") -> str:
    """`path` normalised to a POSIX relative path, or a `VideoPathError` if it is absolute or climbs out with `..`."""
    normalised = posixpath.normpath(path.replace("\\", "/"))
    if posixpath.isabs(normalised) or os.path.isabs(path) or os.path.splitdrive(path)[0]:
        raise VideoPathError(f"{what} {path!r} is absolute; it must be relative to its {media} root.")
    if normalised == ".." or normalised.startswith("../"):
        raise VideoPathError(f"{what} {path!r} escapes its {media} root.")
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
    # What the roots hold and the script's options for them, for the error messages.
    media = "video"
    option = "--video_root"

    @classmethod
    def from_strings(cls, root: str | None = None, per_source: list[str] | None = None) -> "VideoRoots":
        """Build from command-line values: `per_source` items are `data_source=folder`."""
        mapping = {}
        for item in per_source or []:
            source, sep, folder = item.partition("=")
            if not sep or not folder:
                raise ValueError(
                    f"{cls.option}s item {item!r} is not of the form data_source=/path/to/{cls.media}s."
                )
            mapping[source] = folder
        return cls(root=root, per_source=mapping)

    def video_key(self, video: str, data_source: str = "") -> str:
        """The video's path relative to the roots, `<data_source>/<video>`: its identity, also in the feature cache."""
        what = f"{self.media.capitalize()} path"
        relative = _relative_inside(video, what, self.media)
        if not relative:
            raise VideoPathError(f"{what} {video!r} names its root folder, not a {self.media} file.")
        source = _relative_inside(data_source or "", "data_source", self.media)
        return posixpath.join(source, relative) if source else relative

    def resolve(self, video: str, data_source: str = "") -> str:
        """The absolute path of `video` (of `data_source`), checked to stay inside its root."""
        key = self.video_key(video, data_source)
        if data_source in self.per_source:
            relative = _relative_inside(video, f"{self.media.capitalize()} path", self.media)
            return os.path.join(os.path.abspath(self.per_source[data_source]), relative)
        if self.root is None:
            raise VideoPathError(
                f"No {self.media} root for data_source {data_source!r} ({self.media} {video!r}): pass a {self.media} "
                f"root (`{self.option}`) or `{self.option}s {data_source or '<data_source>'}=/path`."
            )
        return os.path.join(os.path.abspath(self.root), key)


class ImageRoots(VideoRoots):
    """The folders images are resolved against, as `VideoRoots` (`<root>/<data_source>/<image>`, `per_source`)."""

    media = "image"
    option = "--image_root"


__all__ = ["ImageRoots", "VideoPathError", "VideoRoots"]
