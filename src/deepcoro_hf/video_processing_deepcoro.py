"""Video processor of DeepCORO-CLIP: angiography cines (DICOM, AVI/MP4, arrays) to `pixel_values_videos`.

The frame pipeline is the original research code's (reference-implementation.md §6), made deterministic:

1. Read. DICOM paths and `pydicom.Dataset`s go through `dicom.read_dicom_video` (8-bit mapping, MONOCHROME1
   inversion, VOI LUT: see that module), decoding only the sampled frames; AVI / MP4 files are decoded with PyAV,
   stopping after the last sampled frame; numpy arrays and torch tensors are taken as they are.
2. Sample `num_frames` frames (default 16) with `stride` (default 1), always the same ones: keep every `stride`-th
   frame; if fewer than `num_frames` remain, repeat the last one, else take `linspace(0, T' - 1, num_frames)`
   truncated to integers. The original drew a random stride even at inference; here it is fixed.
3. float32 in 0-255 units, channels first `[T, C, H, W]`.
4. Resize to `size` (224 x 224), bilinear with antialias, aspect ratio not kept (as the original); or, with
   `letterbox=True`, fit inside `size` keeping the aspect ratio and pad the borders with 0 *after* normalisation,
   i.e. with the mean intensity (also what the padding videos of a study hold).
5. Grey to 3 channels (`do_convert_rgb`), after resizing: one channel to resize instead of three, same values.
6. Training augmentation, only when a call passes `do_augment=True` (`augment`).
7. Normalise with a scalar mean / std in 0-255 units: `do_rescale=False`, and `image_mean` / `image_std` are 3 equal
   values (122.0901 / 28.7908, the released stenosis model's), so BaseVideoProcessor's per-channel normalisation
   computes the original's scalar `Normalize` and the JSON round-trips as plain lists.

Inputs. A path is read as DICOM when it has the 'DICM' marker or a .dcm / .dicom suffix, as a video when its suffix
is a container PyAV reads (.avi, .mp4, ...; grey pixel formats give grey frames, others RGB); anything else raises
`UnsupportedVideoError`. `videos=` takes one video or a list of them; a 4-D array is one video, never a batch of grey
videos (pass a list, or a 5-D array).

Array layout rule. `[T, H, W]` is grey. A 4-D array is `[T, C, H, W]` when axis 1 is 1 or 3 and axis 3 is not, and
`[T, H, W, C]` when axis 3 is 1 or 3 and axis 1 is not. When both are (frames 1 or 3 pixels high or wide) the
layout is ambiguous: pass `input_data_format="channels_first"` or `"channels_last"`. Values must lie in 0-255
(uint8, or any integer or float type in 0-255 units). A 5-D array is a batch of 4-D videos.

Studies. `processor(studies=[[v1, v2, ...], ...])` returns `pixel_values_videos` `[B, N, T, C, H, W]` and
`video_mask` `[B, N]`, zero-padded to `max_videos` (or to the longest study with `pad_to_max_videos=False`). The
videos of a study are ordered by acquisition time (`DicomHeader.sort_key`) for DICOM inputs, and come after them
in the given order for other inputs. Beyond `max_videos`, the first ones in that order are kept and the number
dropped is logged. A bad file raises its typed error; with `skip_invalid=True` it is skipped, logged and reported
under `skipped` (a list of `SkippedVideo`, kept out of tensor conversion), and a study left without any valid
video raises `EmptyStudyError`. `skip_invalid` applies to studies only: in `videos=`, skipping would shift the
batch against its labels or reports, so a bad video always raises.

Metadata. With `return_metadata=True`, `video_metadata` holds a `DeepCoroVideoMetadata` per video (a list per
study for studies): frame count, fps, size, sampled indices, source name, view and UIDs. Patient ID is never read
into it.
"""

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
from huggingface_hub.dataclasses import validate_typed_dict
from pydicom.dataset import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2
from transformers.image_processing_utils import BatchFeature
from transformers.image_utils import ChannelDimension, PILImageResampling, SizeDict
from transformers.processing_utils import Unpack, VideosKwargs
from transformers.video_processing_utils import BaseVideoProcessor
from transformers.video_utils import VideoMetadata

from .dicom import DicomError, DicomHeader, is_dicom, read_dicom_header, read_dicom_video


logger = logging.getLogger(__name__)

STENOSIS_MEAN = 122.0901
"""Mean pixel value (0-255 units) the released stenosis model was trained with."""
STENOSIS_STD = 28.7908
"""Its standard deviation (0-255 units)."""

DICOM_SUFFIXES = (".dcm", ".dicom")
"""Read as DICOM even without the 'DICM' marker, so that a broken file gets the dicom module's typed error."""
CONTAINER_SUFFIXES = (".avi", ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".mpg", ".mpeg")
"""Video files decoded with PyAV."""


class VideoInputError(ValueError):
    """An input the processor cannot turn into frames; the message names the input and what was expected."""


class UnsupportedVideoError(VideoInputError):
    """A file that is neither DICOM nor a video container PyAV decodes."""


class VideoDecodeError(VideoInputError):
    """A video container (AVI, MP4...) that PyAV cannot open or decode."""


class EmptyStudyError(VideoInputError):
    """A study in which no video could be read (all skipped, with `skip_invalid=True`)."""


@dataclass(frozen=True)
class SkippedVideo:
    """A video left out of a study by `skip_invalid=True`."""

    study: int
    """Index of the study in the batch."""
    source: str
    """The file path, or `studies[b][i]` for an array."""
    reason: str
    """Error class and message."""


@dataclass
class DeepCoroVideoMetadata(VideoMetadata):
    """transformers' `VideoMetadata` plus what a study pipeline needs to report per video (never the Patient ID)."""

    source: str | None = None
    """File path, or `videos[i]` / `studies[b][i]` for arrays."""
    view: str | None = None
    """Angiographic view (`vocabulary.VIEWS`) from the positioner angles; DICOM only."""
    study_uid: str | None = None
    series_uid: str | None = None
    sop_uid: str | None = None


class DeepCoroVideosKwargs(VideosKwargs, total=False):
    """Settings beyond transformers' `VideosKwargs`; each is saved in `video_preprocessor_config.json`.

    stride (`int`): keep every `stride`-th frame before sampling `num_frames` (1 for the released model).
    letterbox (`bool`): keep the aspect ratio when resizing and pad with 0 after normalisation.
    max_videos (`int`): most videos per study; the rest are dropped (and counted in the log).
    pad_to_max_videos (`bool`): pad studies to `max_videos` (True) or to the longest study of the batch (False).
    skip_invalid (`bool`): in studies, skip unreadable videos instead of raising (reported under `skipped`).
    """

    stride: int | None
    letterbox: bool | None
    max_videos: int | None
    pad_to_max_videos: bool | None
    skip_invalid: bool | None


def train_augmentation() -> v2.Transform:
    """The training augmentation: RandAugment as in the paper (2 ops at magnitude 9), a rotation of up to 10
    degrees, a mild perspective distortion and the masking of one random patch (set to 0, black), on uint8 frames.
    """
    return v2.Compose(
        [
            v2.RandAugment(num_ops=2, magnitude=9),
            v2.RandomRotation(degrees=10),
            v2.RandomPerspective(distortion_scale=0.2, p=0.5),
            v2.RandomErasing(p=0.5, scale=(0.02, 0.1), value=0),
        ]
    )


class DeepCoroVideoProcessor(BaseVideoProcessor):
    r"""
    Turns angiography videos, or studies of several videos, into the `pixel_values_videos` (and `video_mask`) that
    DeepCORO-CLIP models take. See the module docstring for the pipeline, the array layout rule and studies.

    Overrides, and why:
        `preprocess` / `__call__`: accept DICOM, AVI / MP4, arrays and `studies=`; transformers' own decoding needs
            torchcodec and knows neither DICOM nor studies, and its channel inference guesses when the layout is
            ambiguous (this processor refuses to).
        `sample_frames`: the original's deterministic rule (repeat the last frame of short clips) instead of the
            base class's, which refuses clips shorter than `num_frames`.
        `_preprocess`: resize (or letterbox) then grey to RGB, augmentation between resizing and normalisation,
            one video at a time (studies and batches mix frame sizes).

    Per-call arguments that are never saved: `studies`, `do_augment` and `generator`, so that a saved processor
    never augments.
    """

    valid_kwargs = DeepCoroVideosKwargs
    model_input_names = ["pixel_values_videos", "video_mask"]

    size = {"height": 224, "width": 224}
    resample = PILImageResampling.BILINEAR
    do_resize = True
    do_center_crop = False
    do_rescale = False
    do_normalize = True
    image_mean = [STENOSIS_MEAN] * 3
    image_std = [STENOSIS_STD] * 3
    do_convert_rgb = True
    do_sample_frames = True
    num_frames = 16
    stride = 1
    letterbox = False
    max_videos = 10
    pad_to_max_videos = True
    skip_invalid = False

    def __init__(self, **kwargs: Unpack[DeepCoroVideosKwargs]) -> None:
        super().__init__(**kwargs)
        self._check_options({name: getattr(self, name, None) for name in self.valid_kwargs.__annotations__})

    def __call__(self, videos=None, studies=None, **kwargs) -> BatchFeature:
        return self.preprocess(videos, studies=studies, **kwargs)

    def preprocess(
        self,
        videos=None,
        studies=None,
        *,
        do_augment: bool = False,
        generator: torch.Generator | None = None,
        **kwargs: Unpack[DeepCoroVideosKwargs],
    ) -> BatchFeature:
        """Process `videos` (one clip each: `[B, T, C, H, W]`) or `studies` (lists of videos: `[B, N, T, C, H, W]`
        plus `video_mask`). `do_augment=True` applies `augment` to each video, with random parameters drawn from
        `generator` when given (reproducible) or from torch's global generator. Other keyword arguments override
        the processor's settings for this call."""
        if (videos is None) == (studies is None):
            raise VideoInputError("pass either videos=[...] (one clip each) or studies=[[...], ...] (lists of videos)")
        unknown = sorted(set(kwargs) - set(self.valid_kwargs.__annotations__))
        if unknown:
            raise TypeError(f"unexpected keyword arguments {unknown} for {type(self).__name__}")
        validate_typed_dict(self.valid_kwargs, kwargs)
        options = {name: getattr(self, name, None) for name in self.valid_kwargs.__annotations__}
        options.update((name, value) for name, value in kwargs.items() if value is not None)
        self._check_options(options)

        def read(item, name: str, header: DicomHeader | None = None):
            return self._read_video(item, name, options, header)

        if studies is None:
            loaded = [read(video, f"videos[{i}]") for i, video in enumerate(_as_videos(videos, "videos"))]
            counts, skipped = None, []
        else:
            per_study, skipped = self._read_studies(studies, read, options["max_videos"], options["skip_invalid"])
            counts = [len(study) for study in per_study]
            loaded = [video for study in per_study for video in study]

        frames = [video.to(options["device"]) if options["device"] is not None else video for video, _ in loaded]
        settings = self._standardize_kwargs(**options)
        self._validate_preprocess_kwargs(**settings)
        for name in ("data_format", "return_metadata", "return_tensors"):
            settings.pop(name)
        processed = self._preprocess(frames, do_augment=do_augment, generator=generator, **settings)
        clips = processed["pixel_values_videos"]

        metadata = [info for _, info in loaded]
        if counts is None:
            batch = BatchFeature({"pixel_values_videos": clips}, tensor_type=options["return_tensors"])
        else:
            slots = options["max_videos"] if options["pad_to_max_videos"] else max(counts)
            batch = BatchFeature(_pad_studies(clips, counts, slots), tensor_type=options["return_tensors"])
            metadata = [metadata[sum(counts[:b]) : sum(counts[: b + 1])] for b in range(len(counts))]
        # Added after the tensor conversion, which leaves them as Python objects.
        if options["return_metadata"]:
            batch["video_metadata"] = metadata
        if studies is not None and options["skip_invalid"]:
            batch["skipped"] = skipped
        return batch

    def sample_frames(
        self, metadata: VideoMetadata, num_frames: int | None = None, stride: int | None = None, **kwargs
    ) -> np.ndarray:
        """Indices of the `num_frames` frames to keep from a video of `metadata.total_num_frames` frames.

        Every `stride`-th frame is kept; if fewer than `num_frames` remain, the last is repeated, else
        `torch.linspace(0, T' - 1, num_frames).long()` picks among them, float32 and truncated as in the original,
        so that the same frames are chosen."""
        num_frames = self.num_frames if num_frames is None else num_frames
        stride = self.stride if stride is None else stride
        total = metadata.total_num_frames
        if not total or total < 1:
            raise VideoInputError(f"cannot sample frames from a video of {total} frames; expected at least one")
        kept = np.arange(0, total, stride)
        if len(kept) < num_frames:
            return np.concatenate([kept, np.full(num_frames - len(kept), kept[-1])])
        return kept[torch.linspace(0, len(kept) - 1, num_frames).long().numpy()]

    def augment(self, frames: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """`train_augmentation()` applied to a whole `[T, C, H, W]` clip at once, so every frame gets the same random
        parameters (torchvision v2 transforms draw them once per call and treat the frames as a batch).

        The frames are rounded to uint8 (RandAugment's posterize / equalize need it) and returned as float32. The
        v2 transforms draw from torch's global generator; with `generator`, they run under a seed drawn from it
        and the global generator is left untouched."""
        clip = tv_tensors.Video(frames.round().clamp(0, 255).to(torch.uint8))
        transform = train_augmentation()
        if generator is None:
            augmented = transform(clip)
        else:
            seed = int(torch.randint(0, 2**62, (1,), generator=generator))
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                augmented = transform(clip)
        return augmented.as_subclass(torch.Tensor).to(torch.float32)

    def _preprocess(
        self,
        videos: list[torch.Tensor],
        do_resize: bool,
        size: SizeDict,
        resample: PILImageResampling | int | None,
        do_center_crop: bool,
        crop_size: SizeDict | None,
        do_rescale: bool,
        rescale_factor: float,
        do_normalize: bool,
        image_mean: tuple[float, ...],
        image_std: tuple[float, ...],
        do_convert_rgb: bool,
        letterbox: bool,
        do_augment: bool = False,
        generator: torch.Generator | None = None,
        return_tensors: str | None = None,
        **kwargs,
    ) -> BatchFeature:
        """Resize (or letterbox), crop, augment, normalise, grey to RGB and pad each `[T, C, H, W]` float32 video.

        Grey frames are resized (and, when the mean and std are the same for every channel, normalised) before they
        are copied to 3 channels: a third of the work, the same values."""
        uniform = len(set(image_mean)) == 1 and len(set(image_std)) == 1
        processed = []
        for video in videos:
            padding = None
            if do_resize and letterbox:
                inner, padding = _letterbox(video.shape[-2:], size)
                video = self.resize(video, SizeDict(height=inner[0], width=inner[1]), resample=resample)
            elif do_resize:
                video = self.resize(video, size, resample=resample)
            if do_center_crop:
                video = self.center_crop(video, crop_size)
            grey_first = uniform and video.shape[-3] == 1
            if do_convert_rgb and not grey_first:
                video = self.convert_to_rgb(video)
            if do_augment:
                video = self.augment(video, generator)
            if grey_first:
                video = self.rescale_and_normalize(
                    video, do_rescale, rescale_factor, do_normalize, image_mean[:1], image_std[:1]
                )
                video = self.convert_to_rgb(video) if do_convert_rgb else video
            else:
                video = self.rescale_and_normalize(video, do_rescale, rescale_factor, do_normalize, image_mean, image_std)
            if padding is not None:
                video = v2.functional.pad(video, padding, fill=0.0)
            processed.append(video)
        return BatchFeature({"pixel_values_videos": processed}, tensor_type=return_tensors)

    # ----------------------------------------------------------------------------------------------------------
    # Reading
    # ----------------------------------------------------------------------------------------------------------
    def _read_video(
        self, item: Any, name: str, options: dict, header: DicomHeader | None = None
    ) -> tuple[torch.Tensor, DeepCoroVideoMetadata]:
        """One input to sampled `[T, C, H, W]` float32 frames (0-255) and its metadata."""
        if options["do_sample_frames"]:

            def sample(metadata: VideoMetadata) -> np.ndarray:
                return self.sample_frames(metadata, num_frames=options["num_frames"], stride=options["stride"])

        else:
            sample = None
        if header is not None or isinstance(item, Dataset):
            return _read_dicom(item, sample)
        if isinstance(item, (str, os.PathLike)):
            path = Path(item)
            if not path.is_file():
                raise VideoInputError(f"{path}: no such file; expected a DICOM cine or a video file")
            if path.suffix.lower() in DICOM_SUFFIXES or is_dicom(path):
                return _read_dicom(path, sample)
            if path.suffix.lower() in CONTAINER_SUFFIXES:
                return _read_container(path, sample)
            raise UnsupportedVideoError(
                f"{path}: not a DICOM file (no 'DICM' marker) and not a video file; expected a DICOM cine or one of "
                f"{', '.join(CONTAINER_SUFFIXES)}"
            )
        if isinstance(item, (np.ndarray, torch.Tensor)):
            return _read_array(item, name, sample, options["input_data_format"])
        raise VideoInputError(
            f"{name}: got a {type(item).__name__}; expected a DICOM or video file path, a pydicom Dataset, or a "
            "[T, H, W], [T, H, W, C] or [T, C, H, W] array or tensor"
        )

    def _read_studies(
        self, studies, read, max_videos: int, skip_invalid: bool
    ) -> tuple[list[list[tuple[torch.Tensor, DeepCoroVideoMetadata]]], list[SkippedVideo]]:
        """Read each study's videos in acquisition order, up to `max_videos`, skipping bad ones if asked to.

        DICOM headers are read first (cheap: no pixel data) to order the videos; videos past `max_videos` are never
        decoded."""
        if not isinstance(studies, (list, tuple)) or not studies:
            raise VideoInputError("studies must be a non-empty list of studies, each a list of videos")
        loaded, skipped = [], []

        def skip(study: int, name: str, err: Exception) -> None:
            reason = f"{type(err).__name__}: {err}"
            logger.warning("studies[%d]: skipped %s (%s)", study, name, reason)
            skipped.append(SkippedVideo(study, name, reason))

        for b, study in enumerate(studies):
            if not isinstance(study, (list, tuple)) and not (_is_array(study) and study.ndim == 5):
                raise VideoInputError(f"studies[{b}]: got a {type(study).__name__}; expected a list of videos")
            candidates = []
            for i, item in enumerate(_as_videos(study, f"studies[{b}]")):
                name = _input_name(item, f"studies[{b}][{i}]")
                header = None
                if _is_dicom_source(item):
                    try:
                        header = read_dicom_header(item)
                    except (DicomError, OSError) as err:
                        if not skip_invalid:
                            raise
                        skip(b, name, err)
                        continue
                order = (0, header.sort_key, i) if header is not None else (1, (), i)
                candidates.append((order, item, name, header))
            candidates.sort(key=lambda candidate: candidate[0])

            videos = []
            for position, (_, item, name, header) in enumerate(candidates):
                if len(videos) == max_videos:
                    logger.warning(
                        "studies[%d]: kept the first %d videos in acquisition order and dropped the %d after them "
                        "(max_videos=%d)", b, max_videos, len(candidates) - position, max_videos,
                    )
                    break
                try:
                    videos.append(read(item, name, header))
                except (VideoInputError, DicomError, OSError) as err:
                    if not skip_invalid:
                        raise
                    skip(b, name, err)
            if not videos:
                reasons = [skipped_video.reason for skipped_video in skipped if skipped_video.study == b]
                raise EmptyStudyError(
                    f"studies[{b}]: none of its videos could be read ({len(reasons)} skipped); expected at least one"
                    + (f" (first error: {reasons[0]})" if reasons else "")
                )
            loaded.append(videos)
        return loaded, skipped

    @staticmethod
    def _check_options(options: dict) -> None:
        """Settings transformers' validators let through (0 frames) or that this processor does not support."""
        for name in ("num_frames", "stride", "max_videos"):
            value = options.get(name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if options.get("fps") is not None:
            raise ValueError(
                "fps sampling is not supported: DeepCORO samples num_frames among every stride-th frame, whatever the "
                "frame rate (set stride instead)"
            )
        if options.get("video_metadata") is not None:
            raise ValueError("video_metadata is not taken: the metadata is read from the files (return_metadata=True)")


# --------------------------------------------------------------------------------------------------------------
# Readers (module functions: they need nothing from the processor but the sampling function)
# --------------------------------------------------------------------------------------------------------------
def _dicom_metadata(header: DicomHeader) -> DeepCoroVideoMetadata:
    return DeepCoroVideoMetadata(
        total_num_frames=header.num_frames,
        fps=header.fps,
        width=header.columns,
        height=header.rows,
        duration=header.num_frames / header.fps if header.fps else None,
        video_backend="pydicom",
        source=header.source,
        view=header.view,
        study_uid=header.study_uid,
        series_uid=header.series_uid,
        sop_uid=header.sop_uid,
    )


def _read_dicom(source, sample) -> tuple[torch.Tensor, DeepCoroVideoMetadata]:
    """Decode only the sampled frames of a DICOM cine; the frame count comes from the header, which is parsed once
    (the sampling function receives it from the reader)."""
    frame_indices = None if sample is None else (lambda parsed: sample(_dicom_metadata(parsed)))
    video = read_dicom_video(source, frame_indices=frame_indices)
    metadata = _dicom_metadata(video)
    metadata.frames_indices = list(video.frame_indices)
    frames = torch.from_numpy(video.frames)
    return _channels_first(frames, ChannelDimension.LAST if frames.ndim == 4 else None), metadata


def _read_container(path: Path, sample, trust_count: bool = True) -> tuple[torch.Tensor, DeepCoroVideoMetadata]:
    """Decode an AVI / MP4 with PyAV: frames are decoded in order up to the last sampled one, and only the sampled
    ones are converted to arrays. When the container does not give its frame count, or gives more frames than it
    holds (`trust_count=False` on the second try), every frame is decoded and the sample drawn from what is there."""
    try:
        with av.open(os.fspath(path)) as container:
            if not container.streams.video:
                raise VideoDecodeError(f"{path}: no video stream; expected an angiography video")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            colour = "gray" if (stream.codec_context.pix_fmt or "").startswith("gray") else "rgb24"
            fps = float(stream.average_rate) if stream.average_rate else None
            metadata = DeepCoroVideoMetadata(
                total_num_frames=stream.frames if trust_count else 0,
                fps=fps,
                width=stream.codec_context.width,
                height=stream.codec_context.height,
                video_backend="pyav",
                source=str(path),
            )
            wanted = sample(metadata) if sample is not None and metadata.total_num_frames > 0 else None
            needed = None if wanted is None else set(wanted.tolist())
            decoded: dict[int, np.ndarray] = {}
            count = 0
            for index, frame in enumerate(container.decode(stream)):
                count = index + 1
                if needed is None or index in needed:
                    decoded[index] = frame.to_ndarray(format=colour)
                if needed is not None and index >= max(needed):
                    break
    except av.FFmpegError as err:
        raise VideoDecodeError(f"{path}: cannot be decoded as a video ({err})") from err
    if count == 0:
        raise VideoDecodeError(f"{path}: the video has no frame; expected at least one")
    if needed is not None and count <= max(needed):
        logger.debug("%s: the container announces %d frames but holds %d; sampling again", path, stream.frames, count)
        return _read_container(path, sample, trust_count=False)
    if wanted is None:
        metadata.total_num_frames = count
        wanted = sample(metadata) if sample is not None else np.arange(count)
    metadata.frames_indices = [int(i) for i in wanted]
    metadata.duration = metadata.total_num_frames / fps if fps else None
    frames = torch.from_numpy(np.stack([decoded[int(i)] for i in wanted]))
    return _channels_first(frames, ChannelDimension.LAST if frames.ndim == 4 else None), metadata


def _read_array(array, name: str, sample, input_data_format) -> tuple[torch.Tensor, DeepCoroVideoMetadata]:
    """A numpy array or torch tensor, checked (rank, layout, emptiness, dtype, 0-255 range), then sampled."""
    if array.ndim not in (3, 4):
        raise VideoInputError(
            f"{name}: array of shape {list(array.shape)}; expected [T, H, W], [T, H, W, C] or [T, C, H, W]"
        )
    if 0 in array.shape:
        raise VideoInputError(f"{name}: empty video of shape {list(array.shape)}; expected frames")
    if isinstance(array, np.ndarray):
        numeric = array.dtype.kind in "uif"
    else:
        numeric = array.dtype != torch.bool and not array.is_complex()
    if not numeric:
        raise VideoInputError(f"{name}: {array.dtype} values; expected uint8, or numbers in 0-255 units")
    layout = _layout(tuple(array.shape), name, input_data_format)
    height, width = array.shape[-2:] if layout == ChannelDimension.FIRST else array.shape[1:3]
    metadata = DeepCoroVideoMetadata(total_num_frames=array.shape[0], width=int(width), height=int(height), source=name)
    indices = sample(metadata) if sample is not None else np.arange(array.shape[0])
    metadata.frames_indices = [int(i) for i in indices]
    # Only the sampled frames are copied (fancy indexing), which also gives torch the positive strides it needs.
    if isinstance(array, np.ndarray):
        frames = torch.from_numpy(array[indices])
    else:
        frames = array.detach()[torch.as_tensor(indices, device=array.device)]
    low, high = frames.min().item(), frames.max().item()
    if low < 0 or high > 255:
        raise VideoInputError(
            f"{name}: values from {low:g} to {high:g}; expected 0-255 (uint8, or floats in 0-255 units, not normalised)"
        )
    if frames.is_floating_point() and 0 < high <= 1:
        logger.warning("%s: float values no higher than %g look scaled to 0-1; expected 0-255 units", name, high)
    return _channels_first(frames, layout), metadata


def _layout(shape: tuple[int, ...], name: str, input_data_format) -> ChannelDimension | None:
    """Where the channels of a `[T, ...]` array are, by the rule in the module docstring (None: grey `[T, H, W]`)."""
    if len(shape) == 3:
        return None
    if input_data_format is not None:
        layout = ChannelDimension(input_data_format)
        channels = shape[1] if layout == ChannelDimension.FIRST else shape[3]
        if channels not in (1, 3):
            raise VideoInputError(
                f"{name}: shape {list(shape)} has {channels} channels as {layout.value}; expected 1 or 3"
            )
        return layout
    first, last = shape[1] in (1, 3), shape[3] in (1, 3)
    if first and last:
        raise VideoInputError(
            f"{name}: shape {list(shape)} is ambiguous, [T, C, H, W] or [T, H, W, C]; pass "
            "input_data_format='channels_first' or 'channels_last'"
        )
    if first or last:
        return ChannelDimension.FIRST if first else ChannelDimension.LAST
    raise VideoInputError(
        f"{name}: shape {list(shape)}; expected [T, H, W], [T, H, W, C] or [T, C, H, W] with C = 1 or 3"
    )


def _channels_first(frames: torch.Tensor, layout: ChannelDimension | None) -> torch.Tensor:
    """float32 `[T, C, H, W]` from grey `[T, H, W]` (layout None), channels-last or channels-first frames."""
    if layout is None:
        frames = frames.unsqueeze(1)
    elif layout == ChannelDimension.LAST:
        frames = frames.permute(0, 3, 1, 2)
    return frames.to(torch.float32).contiguous()


def _letterbox(shape: tuple[int, int], size: SizeDict) -> tuple[tuple[int, int], list[int] | None]:
    """Size that fits `shape` inside `size` with its aspect ratio, and the [left, top, right, bottom] padding."""
    if not size.height or not size.width:
        raise ValueError(f"letterbox needs size with height and width, got {dict(size)}")
    height, width = int(shape[0]), int(shape[1])
    scale = min(size.height / height, size.width / width)
    inner = (max(1, min(size.height, round(height * scale))), max(1, min(size.width, round(width * scale))))
    top, left = (size.height - inner[0]) // 2, (size.width - inner[1]) // 2
    padding = [left, top, size.width - inner[1] - left, size.height - inner[0] - top]
    return inner, padding if any(padding) else None


def _pad_studies(clips: list[torch.Tensor], counts: list[int], slots: int) -> dict[str, torch.Tensor]:
    """Stack each study's clips into `[B, slots, T, C, H, W]` with zeros after its last video, and the mask."""
    shapes = {tuple(clip.shape) for clip in clips}
    if len(shapes) > 1:
        raise VideoInputError(
            f"the videos of a study batch must have one shape to be stacked, got {sorted(shapes)}; keep "
            "do_sample_frames=True and a fixed size"
        )
    pixel_values = clips[0].new_zeros((len(counts), slots, *clips[0].shape))
    video_mask = torch.zeros((len(counts), slots), dtype=torch.bool, device=clips[0].device)
    start = 0
    for b, count in enumerate(counts):
        pixel_values[b, :count] = torch.stack(clips[start : start + count])
        video_mask[b, :count] = True
        start += count
    return {"pixel_values_videos": pixel_values, "video_mask": video_mask}


def _is_array(item) -> bool:
    return isinstance(item, (np.ndarray, torch.Tensor))


def _as_videos(videos, what: str) -> list:
    """A single video (path, Dataset, 3-D / 4-D array) or a list / 5-D batch of them, as a list."""
    if isinstance(videos, (list, tuple)) or (_is_array(videos) and videos.ndim == 5):
        items = list(videos)
    else:
        items = [videos]
    if not items:
        raise VideoInputError(f"{what} is empty; expected at least one video")
    return items


def _input_name(item, fallback: str) -> str:
    """How logs, errors and metadata name an input: its path when it has one."""
    if isinstance(item, (str, os.PathLike)):
        return os.fspath(item)
    if isinstance(item, Dataset) and isinstance(getattr(item, "filename", None), str):
        return item.filename
    return fallback


def _is_dicom_source(item) -> bool:
    if isinstance(item, Dataset):
        return True
    if not isinstance(item, (str, os.PathLike)):
        return False
    path = Path(item)
    return path.is_file() and (path.suffix.lower() in DICOM_SUFFIXES or is_dicom(path))


__all__ = [
    "DeepCoroVideoMetadata",
    "DeepCoroVideoProcessor",
    "EmptyStudyError",
    "SkippedVideo",
    "UnsupportedVideoError",
    "VideoDecodeError",
    "VideoInputError",
    "train_augmentation",
]
