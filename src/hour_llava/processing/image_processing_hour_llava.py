# Copyright 2026 The hour-llava authors. Licensed under the Apache License, Version 2.0.
"""Image processor of Hour-LLaVA: the reference's `anyres_max_9` tiling for a single image, "pad" for each image of a
multi-image sample, with SigLIP normalisation, as the released checkpoints were trained.

This file is copied next to saved checkpoints for `trust_remote_code=True` loading, so it imports only pip packages
and siblings of this folder.
"""

import torch
import torchvision.transforms.v2.functional as tvF
from transformers.image_processing_backends import TorchvisionBackend
from transformers.image_processing_utils import BatchFeature, get_patch_output_size, select_best_resolution
from transformers.image_transforms import divide_to_patches
from transformers.image_utils import (
    IMAGENET_STANDARD_MEAN,
    IMAGENET_STANDARD_STD,
    ChannelDimension,
    ImageInput,
    PILImageResampling,
    SizeDict,
    get_image_size,
    is_pil_image,
)
from transformers.processing_utils import ImagesKwargs, Unpack
from transformers.utils import TensorType


TILE_GRID_SIDE = 6  # the released checkpoints' `image_grid_pinpoints` are the tile grids 1x1 ... 6x6
DEFAULT_CROP_SIZE = 384


def grid_pinpoints(tile_size: int = DEFAULT_CROP_SIZE, max_side: int = TILE_GRID_SIDE) -> list[list[int]]:
    """Candidate resolutions `[height, width]` for tile grids 1x1 ... `max_side`x`max_side`, in the reference's order.

    The reference lists `[i * S, j * S]` (width, height; `i` outer); the grid is symmetric, so listing the same pairs
    as (height, width) gives the same candidates, and a test checks the choice is the reference's for every size.
    """
    return [[i * tile_size, j * tile_size] for i in range(1, max_side + 1) for j in range(1, max_side + 1)]


class HourLlavaImageProcessorKwargs(ImagesKwargs, total=False):
    r"""
    image_grid_pinpoints (`list[list[int]]`, *optional*):
        Candidate `[height, width]` resolutions a single image is resized (and padded) to before it is cut into
        crops of `size`. Defaults to the released checkpoints' 1x1 ... 6x6 grids of 384-pixel tiles.
    """

    image_grid_pinpoints: list[list[int]]


class HourLlavaImageProcessor(TorchvisionBackend):
    r"""
    Turns images into Hour-LLaVA's crops: pixel values rescaled by 1/255 and normalised with mean = std = 0.5.

    - A sample with **one image** (`anyres_max_9`): the whole image resized straight to `size` (no aspect ratio
      kept), then the tiles of the image resized (aspect ratio kept, `ceil` on the short side) and centred on black
      at the best of `image_grid_pinpoints`, cut row by row into `size` crops: `1 + rows * cols` crops.
    - A sample with **several images** ("pad"): each image padded to a centred square with the mean colour (127),
      then resized to `size`: one crop per image.

    Resizing is torchvision's antialiased bicubic on uint8, which stays within 2 grey levels of PIL's bicubic (the
    reference's `Image.resize`). Transparency is dropped, not composited on white, as transformers 4.46 (the
    authors' pin) did; grayscale and palette images become RGB first.

    Images are given as transformers takes them: one image, a list of images (one per sample) or a list of lists
    (the images of each sample; an empty list for a text-only sample).

    Outputs: `pixel_values` `(sum_crops, 3, height, width)` (every crop of every image, in order),
    `image_num_crops` `(num_images,)`, `image_sizes` `(num_images, 2)` (original height, width: the model needs them
    to strip the padding from the tile features) and `batch_num_images` `(num_samples,)`.
    """

    model_input_names = ["pixel_values", "image_num_crops", "image_sizes", "batch_num_images"]
    valid_kwargs = HourLlavaImageProcessorKwargs
    resample = PILImageResampling.BICUBIC
    image_mean = list(IMAGENET_STANDARD_MEAN)  # SigLIP's 0.5
    image_std = list(IMAGENET_STANDARD_STD)
    size = {"height": DEFAULT_CROP_SIZE, "width": DEFAULT_CROP_SIZE}
    default_to_square = True
    do_resize = True
    do_rescale = True
    rescale_factor = 1 / 255
    do_normalize = True
    do_convert_rgb = True
    image_grid_pinpoints = grid_pinpoints()

    def __init__(self, **kwargs: Unpack[HourLlavaImageProcessorKwargs]):
        super().__init__(**kwargs)

    def preprocess(self, images: ImageInput, **kwargs: Unpack[HourLlavaImageProcessorKwargs]) -> BatchFeature:
        """Crop and normalise `images`; see the class docstring for the input forms and outputs."""
        images, batch_num_images = _per_sample_images(images)
        if not images:  # text-only samples: no crops, but the counts still say so per sample
            return self._batch_output([], [], batch_num_images, kwargs.get("return_tensors"))
        return super().preprocess(images, batch_num_images, **kwargs)

    def process_image(self, image: ImageInput, do_convert_rgb: bool | None = None, **kwargs) -> torch.Tensor:
        """One input as a channels-first uint8 tensor; PIL images become RGB by PIL's own `convert("RGB")`.

        transformers 5.x composites transparent PIL images on white; the checkpoints were trained with the alpha
        channel dropped (and palette images mapped through their palette), which is what `convert("RGB")` does.
        """
        if do_convert_rgb and is_pil_image(image) and image.mode != "RGB":
            image = image.convert("RGB")
        return super().process_image(image, do_convert_rgb=do_convert_rgb, **kwargs)

    def convert_to_rgb(self, image: torch.Tensor, input_data_format=None) -> torch.Tensor:
        """Arrays and tensors: grey becomes RGB, a fourth (alpha) channel is dropped, as for PIL images."""
        if image.ndim == 2:
            image = image[None]
        if image.shape[-3] == 4:
            return image[..., :3, :, :]
        return tvF.grayscale_to_rgb(image)

    def _preprocess(
        self,
        images: list[torch.Tensor],
        batch_num_images: list[int],
        do_resize: bool,
        size: SizeDict,
        image_grid_pinpoints: list[list[int]],
        resample: PILImageResampling | None,
        do_rescale: bool,
        rescale_factor: float,
        do_normalize: bool,
        image_mean: float | list[float] | None,
        image_std: float | list[float] | None,
        return_tensors: str | TensorType | None,
        **kwargs,
    ) -> BatchFeature:
        if len(images) != sum(batch_num_images):
            raise ValueError(
                f"Got {len(images)} images for samples holding {batch_num_images} images: pass one image per sample "
                "or a list of images per sample."
            )
        if not do_resize:
            raise ValueError("do_resize=False is not supported: every crop is resized to `size` (the model's input).")
        crop_size = _crop_size(size)
        single = [count == 1 for count in batch_num_images for _ in range(count)]
        fill = [int(mean * 255) for mean in _per_channel(image_mean)]
        crops = []
        for image, tiled in zip(images, single):
            if tiled:
                crops.append(self.anyres_crops(image, image_grid_pinpoints, crop_size, resample))
            else:
                crops.append(self.pad_crop(image, crop_size, fill, resample))
        pixel_values = self.rescale_and_normalize(
            torch.cat(crops), do_rescale, rescale_factor, do_normalize, image_mean, image_std
        )
        image_sizes = [get_image_size(image, ChannelDimension.FIRST) for image in images]
        image_num_crops = [len(image_crops) for image_crops in crops]
        return self._batch_output(pixel_values, image_num_crops, batch_num_images, return_tensors, image_sizes)

    def _batch_output(
        self,
        pixel_values: torch.Tensor | list,
        image_num_crops: list[int],
        batch_num_images: list[int],
        return_tensors: str | TensorType | None,
        image_sizes: list[tuple[int, int]] = (),
    ) -> BatchFeature:
        if not len(pixel_values):
            size = _crop_size(SizeDict(**self.size) if isinstance(self.size, dict) else self.size)
            pixel_values = torch.zeros((0, 3, size, size))
        data = {
            "pixel_values": pixel_values,
            "image_num_crops": torch.tensor(image_num_crops, dtype=torch.long),
            "image_sizes": torch.tensor(image_sizes, dtype=torch.long).reshape(-1, 2),
            "batch_num_images": torch.tensor(batch_num_images, dtype=torch.long),
        }
        return BatchFeature(data=data, tensor_type=return_tensors)

    def anyres_crops(
        self,
        image: torch.Tensor,
        image_grid_pinpoints: list[list[int]],
        crop_size: int,
        resample: PILImageResampling | None,
    ) -> torch.Tensor:
        """`(1 + rows * cols, C, crop, crop)` uint8: the whole image resized to a crop, then its tiles row by row."""
        best_resolution = select_best_resolution(get_image_size(image, ChannelDimension.FIRST), image_grid_pinpoints)
        for side in best_resolution:
            if side % crop_size:
                raise ValueError(
                    f"image_grid_pinpoints entry {list(best_resolution)} is not a multiple of the crop size "
                    f"{crop_size}: every pinpoint must be a whole grid of crops."
                )
        tiles = divide_to_patches(self.resize_and_pad(image, best_resolution, resample), crop_size)
        base = self.resize(image, SizeDict(height=crop_size, width=crop_size), resample=resample)
        return torch.stack([base, *tiles])

    def resize_and_pad(
        self, image: torch.Tensor, target: tuple[int, int], resample: PILImageResampling | None
    ) -> torch.Tensor:
        """`image` resized to fit `target` (height, width) with its aspect ratio (the short side rounded up), centred
        on black; the extra pixel of an odd margin goes to the bottom or right."""
        height, width = get_patch_output_size(image, target, ChannelDimension.FIRST)
        resized = self.resize(image, SizeDict(height=height, width=width), resample=resample)
        top, left = (target[0] - height) // 2, (target[1] - width) // 2
        return tvF.pad(resized, [left, top, target[1] - width - left, target[0] - height - top], fill=0)

    def pad_crop(
        self, image: torch.Tensor, crop_size: int, fill: list[int], resample: PILImageResampling | None
    ) -> torch.Tensor:
        """`(1, C, crop, crop)` uint8: `image` centred on a square of colour `fill`, resized to a crop."""
        height, width = get_image_size(image, ChannelDimension.FIRST)
        side = max(height, width)
        top, left = (side - height) // 2, (side - width) // 2
        square = tvF.pad(image, [left, top, side - width - left, side - height - top], fill=fill)
        return self.resize(square, SizeDict(height=crop_size, width=crop_size), resample=resample)[None]


def _per_sample_images(images: ImageInput) -> tuple[list, list[int]]:
    """Flat images and the number each sample holds: a list of lists is per sample; otherwise one image a sample
    (a 4D array or tensor is a batch of images, one a sample)."""
    if getattr(images, "ndim", None) == 4:
        images = list(images)
    if isinstance(images, (list, tuple)) and any(isinstance(sample, (list, tuple)) for sample in images):
        samples = [sample if isinstance(sample, (list, tuple)) else [sample] for sample in images]
        return [image for sample in samples for image in sample], [len(sample) for sample in samples]
    if isinstance(images, (list, tuple)):
        return list(images), [1] * len(images)
    return [images], [1]


def _crop_size(size: SizeDict) -> int:
    if size.height is None or size.height != size.width:
        raise ValueError(f"size={dict(size)} must be a square {{'height': S, 'width': S}}: crops are S x S tiles.")
    return size.height


def _per_channel(value: float | list[float] | tuple[float, ...]) -> list[float]:
    return list(value) if isinstance(value, (list, tuple)) else [value] * 3


__all__ = ["HourLlavaImageProcessor", "grid_pinpoints"]
