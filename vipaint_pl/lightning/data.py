"""The queries to solve: images (a file or folder) with masks (files or a generator), and the task."""

from __future__ import annotations

from typing_extensions import override

from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from .. import rng
from ..errors import ConfigError, ImageReadError, ShapeError
from ..image_io import image_file_size, list_images, load_image
from ..masks import MASK_KINDS, make_mask, read_mask
from ..operators import TASKS, operator_for_task
from ..queries import Query, make_query


class _Steps(IterableDataset):
    """An endless stream of step numbers: each optimization step uses every local query."""

    def __iter__(self):
        step = 0
        while True:
            yield step
            step += 1


class _LocalBatches(IterableDataset):
    """Batches of local query indices. Iterable, so no distributed sampler re-shards a rank's own shard."""

    def __init__(self, indices: list[int], batch_size: int):
        self.indices, self.batch_size = list(indices), batch_size

    @property
    def num_queries(self) -> int:
        return len(self.indices)

    def __iter__(self):
        for i in range(0, len(self.indices), self.batch_size):
            yield self.indices[i : i + self.batch_size]

    def __len__(self) -> int:
        return -(-len(self.indices) // self.batch_size)


class QueryDataModule(L.LightningDataModule):
    """Queries for fit / predict.

    Args:
        images: an image file or a folder of images.
        masks: a mask file (used for every image) or a folder with one mask per image (same file stem);
            white = missing unless ``mask_missing="black"``. If None, masks come from ``mask_kind``.
        mask_kind: generator used when ``masks`` is None: random, small, half, box, extreme.
        image_size: resize (centre crop) to this size; None keeps the file's size.
        channels: 3 (RGB) or 1 (greyscale).
        task: inpainting, super_resolution (task_kwargs: factor) or deblur (kernel_size, sigma).
        output_dir: where predictions are written, one folder per query.
        limit: use only the first ``limit`` images.
        overwrite: predict every query again; by default a query whose ``result.pt`` is already in
            ``output_dir`` is skipped (it is the last file written, so its presence means complete).
        sigma_y: measurement noise added to y = A x + sigma_y n (n seeded by the seed and the image name);
            0 (the default) observes the image exactly. The DPS papers tuned their step sizes with 0.05
            (in [-1, 1] units); VIPaint's likelihood reads it when ``bound.likelihood_scale`` is null.
    """

    def __init__(self, images: str, masks: str | None = None, mask_kind: str = "random", image_size: int | None = None,
                 channels: int = 3, mask_missing: str = "white", mask_threshold: float | None = None,
                 task: str = "inpainting", task_kwargs: dict | None = None, seed: int = 0,
                 output_dir: str = "outputs/results", limit: int | None = None, query_batch_size: int = 4,
                 overwrite: bool = False, sigma_y: float = 0.0):
        super().__init__()
        for key, value in (("image_size", image_size), ("limit", limit), ("query_batch_size", query_batch_size)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"data.{key} must be a positive integer, got {value!r}")
        if isinstance(sigma_y, bool) or not isinstance(sigma_y, (int, float)) or sigma_y < 0:
            raise ConfigError(f"data.sigma_y must be a number >= 0, got {sigma_y!r}")
        if channels not in (1, 3):
            raise ConfigError(f"data.channels must be 1 or 3, got {channels!r}")
        if mask_threshold is not None and not 0 < mask_threshold < 1:
            raise ConfigError(f"data.mask_threshold must lie in (0, 1), got {mask_threshold!r}")
        if task not in TASKS:
            raise ConfigError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
        if masks is None and mask_kind not in MASK_KINDS:
            raise ConfigError(f"unknown mask_kind {mask_kind!r}; choose one of {', '.join(MASK_KINDS)}")
        self.images, self.masks, self.mask_kind = images, masks, mask_kind
        self.image_size, self.channels = image_size, channels
        self.mask_missing, self.mask_threshold = mask_missing, mask_threshold
        self.task, self.task_kwargs = task, dict(task_kwargs or {})
        self.seed, self.output_dir, self.limit = seed, output_dir, limit
        self.query_batch_size, self.overwrite, self.sigma_y = query_batch_size, overwrite, float(sigma_y)
        self.queries: list[Query] | None = None
        self.skipped: list[str] = []

    def _image_files(self) -> list[Path]:
        path = Path(self.images)
        if path.is_file():
            return [path]
        if not path.exists():
            raise ImageReadError(f"images path {self.images!r} does not exist")
        files = list_images(path)
        return files[: self.limit] if self.limit else files

    def _mask_for(self, image_file: Path, h: int, w: int) -> torch.Tensor:
        if self.masks is None:
            seed = rng.query_seed(self.seed, image_file.stem, "mask")
            return make_mask(self.mask_kind, h, w, np.random.default_rng(seed))
        path = Path(self.masks)
        if path.is_dir():
            matches = [p for p in list_images(path) if p.stem == image_file.stem]
            if not matches:
                raise ImageReadError(f"no mask named {image_file.stem}.* in {self.masks!r} for image {image_file.name!r}")
            path = matches[0]
        elif not path.is_file():
            raise ImageReadError(f"masks path {self.masks!r} does not exist")
        # the mask file must have its image file's size; both then get the same crop and resize
        image_hw, mask_hw = image_file_size(image_file), image_file_size(path)
        if image_hw != mask_hw:
            raise ShapeError(f"mask {str(path)!r} is {mask_hw[1]}x{mask_hw[0]} (WxH) but image {str(image_file)!r} is "
                             f"{image_hw[1]}x{image_hw[0]}: a mask must have its image's size")
        return read_mask(path, size=self.image_size, missing=self.mask_missing, threshold=self.mask_threshold)

    def build_queries(self) -> list[Query]:
        queries = []
        for f in self._image_files():
            image = load_image(f, self.image_size, self.channels)
            mask = self._mask_for(f, *image.shape[-2:])
            queries.append(make_query(f.stem, image, mask, self.channels, inpainting=self.task == "inpainting"))
        if self.task != "inpainting":  # the observation is A(x); the mask is all ones
            for q in queries:
                q.mask = torch.ones_like(q.mask)
                op = operator_for_task(self.task, q.mask[None], **self.task_kwargs)
                q.observed = op.pinv(op(q.truth[None]))[0]
        return queries

    @override
    def setup(self, stage: str | None = None) -> None:
        if self.queries is None:
            self.queries = self.build_queries()

    def local_indices(self, rank: int, world_size: int) -> list[int]:
        """The fixed shard of queries a rank owns: every world_size-th, starting at its rank."""
        return list(range(len(self.queries)))[rank::world_size]

    @override
    def train_dataloader(self):
        return DataLoader(_Steps(), batch_size=None)

    def is_complete(self, name: str) -> bool:
        """Whether a query's outputs are all written (``result.pt`` is written last, atomically)."""
        return self.output_dir is not None and (Path(self.output_dir) / name / "result.pt").is_file()

    @override
    def predict_dataloader(self):
        names = self.trainer.lightning_module.names if self.trainer else [q.name for q in self.queries]
        done = [not self.overwrite and self.is_complete(name) for name in names]
        todo = [i for i, d in enumerate(done) if not d]
        self.skipped = [name for name, d in zip(names, done) if d]
        return DataLoader(_LocalBatches(todo, self.query_batch_size), batch_size=None)
