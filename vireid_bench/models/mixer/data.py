"""Image lists -> tensors: datasets, the identity-balanced sampler, augmentations.

Input is a DataFrame with columns ``path`` (relative to ``root``), ``pid``, ``cam``,
``modality`` (0 visible, 1 infrared), as :func:`vireid_bench.models.mixer.index.image_index`
returns it.

Training augmentation (paper §4.1(c): resize to 288 x 144, random crop, random erasing,
"filled with zero padding or mean pixels"; the issue adds flips and channel/grayscale
augmentation): resize -> zero padding -> random crop back to size -> horizontal flip ->
(visible images only) channel exchange (all three channels replaced by one random
channel) or grayscale -> normalise with the ImageNet statistics -> random erasing filled
with 0, i.e. the mean pixel after normalisation.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ChannelAugment:
    """Visible images only: with ``p_exchange`` copy one random channel into all three
    (channel exchange), else with ``p_gray`` convert to grayscale. Operates on [3, H, W]
    tensors in [0, 1]; needs ``torch.Generator``-free randomness from torch's global RNG."""

    def __init__(self, p_exchange: float, p_gray: float) -> None:
        self.p_exchange = p_exchange
        self.p_gray = p_gray

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        draw = float(torch.rand(()))
        if draw < self.p_exchange:
            channel = int(torch.randint(0, 3, ()))
            return image[channel : channel + 1].expand(3, -1, -1).clone()
        if draw < self.p_exchange + self.p_gray:
            weights = torch.tensor([0.299, 0.587, 0.114], dtype=image.dtype)[:, None, None]
            return (image * weights).sum(0, keepdim=True).expand(3, -1, -1).clone()
        return image


def train_transforms(input_config: Mapping[str, Any]):
    """Return ``{0: visible transform, 1: infrared transform}`` (PIL image -> tensor)."""
    from torchvision import transforms as T

    size = (input_config["height"], input_config["width"])

    def build(channel_augment: bool):
        steps = [T.Resize(size)]
        if input_config["pad"] > 0:
            steps += [T.Pad(input_config["pad"], fill=0), T.RandomCrop(size)]
        steps += [T.RandomHorizontalFlip(input_config["flip_p"]), T.ToTensor()]
        if channel_augment and (input_config["channel_exchange_p"] or input_config["grayscale_p"]):
            steps.append(
                ChannelAugment(input_config["channel_exchange_p"], input_config["grayscale_p"])
            )
        steps.append(T.Normalize(IMAGENET_MEAN, IMAGENET_STD))
        if input_config["erasing_p"] > 0:
            steps.append(T.RandomErasing(p=input_config["erasing_p"], value=0))
        return T.Compose(steps)

    return {0: build(True), 1: build(False)}


def test_transform(input_config: Mapping[str, Any]):
    """Resize and normalise (flip averaging happens in the extractor)."""
    from torchvision import transforms as T

    size = (input_config["height"], input_config["width"])
    return T.Compose([T.Resize(size), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


class ImageListDataset(Dataset):
    """Images of a DataFrame; item ``i`` is ``(image, label, modality, i)``.

    Args:
        frame: DataFrame with ``path, pid, cam, modality``.
        root: the dataset root the paths are relative to.
        transform: a callable PIL -> tensor, or a dict ``{modality: callable}``.
        labels: int64 [N] training class per row (default: the pid).
    """

    def __init__(self, frame, root: str | Path, transform, labels: np.ndarray | None = None):
        self.root = Path(root)
        self.paths = frame["path"].astype(str).tolist()
        self.modality = frame["modality"].to_numpy(dtype=np.int64)
        self.labels = (
            frame["pid"].to_numpy(dtype=np.int64) if labels is None else np.asarray(labels)
        )
        self.transform = transform
        self.cache: list[np.ndarray | None] = []

    def __len__(self) -> int:
        return len(self.paths)

    def decode(self, index: int):
        """Image ``index`` as an RGB PIL image: from the cache when it holds it, else
        read and decoded from disk (the same pixels either way)."""
        from PIL import Image

        if index < len(self.cache) and self.cache[index] is not None:
            return Image.fromarray(self.cache[index])
        with Image.open(self.root / self.paths[index]) as handle:
            return handle.convert("RGB")

    def fill_cache(self, limit_bytes: int) -> tuple[int, int]:
        """Decode images in list order into memory until the next would pass ``limit_bytes``.

        The cache holds the decoded RGB pixels (uint8 ``H x W x 3``, read-only), i.e. what
        :meth:`decode` would return before any random augmentation, so a cached run draws
        exactly the same batches as an uncached one. It is filled here, in the main
        process, before the loader starts its workers: forked workers share it
        copy-on-write, spawned ones receive a copy each.

        Returns:
            (images cached, bytes used).
        """
        cache: list[np.ndarray | None] = [None] * len(self.paths)
        used = 0
        count = 0
        for index in range(len(self.paths)):
            pixels = np.asarray(self.decode(index), dtype=np.uint8)
            if used + pixels.nbytes > limit_bytes:
                break
            pixels.setflags(write=False)
            cache[index] = pixels
            used += pixels.nbytes
            count += 1
        self.cache = cache
        return count, used

    def __getitem__(self, index: int):
        image = self.decode(index)
        modality = int(self.modality[index])
        transform = (
            self.transform[modality] if isinstance(self.transform, Mapping) else self.transform
        )
        return transform(image), int(self.labels[index]), modality, index


class IdentityBalancedSampler(Sampler[list[int]]):
    """Batches of ``batch_ids`` identities x (``num_pos`` visible + ``num_pos`` infrared).

    Identities are drawn without replacement (a fresh permutation whenever the previous
    one is used up); each identity's images of a modality are drawn without replacement
    when it has at least ``num_pos`` of them, with replacement otherwise. Only identities
    with images in both modalities are used. The sequence depends only on ``seed`` and the
    epoch set with :meth:`set_epoch`, so a resumed run sees the same batches.

    Args:
        labels: int64 [N] class of each image.
        modality: int64 [N] 0 / 1.
        batch_ids: P, identities per batch (capped at the number of usable identities).
        num_pos: K, images per identity and modality.
        iterations: batches per epoch (0: ``max(#visible, #infrared) // (P * K)``, at
            least 1, the AGW convention of one pass over the larger modality).
        seed: base seed.
    """

    def __init__(
        self,
        labels: np.ndarray,
        modality: np.ndarray,
        batch_ids: int,
        num_pos: int,
        iterations: int = 0,
        seed: int = 0,
    ) -> None:
        labels = np.asarray(labels)
        modality = np.asarray(modality)
        self.pools: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for label in np.unique(labels):
            visible = np.flatnonzero((labels == label) & (modality == 0))
            infrared = np.flatnonzero((labels == label) & (modality == 1))
            if visible.size and infrared.size:
                self.pools[int(label)] = (visible, infrared)
        if len(self.pools) < 2:
            raise ValueError(
                "the identity-balanced sampler needs 2 identities seen in both modalities"
            )
        self.ids = np.array(sorted(self.pools))
        self.batch_ids = min(batch_ids, self.ids.size)
        self.num_pos = num_pos
        if iterations <= 0:
            larger = max(int((modality == 0).sum()), int((modality == 1).sum()))
            iterations = max(1, larger // (self.batch_ids * num_pos))
        self.iterations = iterations
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batches the next iteration yields."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.iterations

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        queue: list[int] = []
        for _ in range(self.iterations):
            if len(queue) < self.batch_ids:
                waiting = set(queue)
                queue += [int(i) for i in rng.permutation(self.ids) if int(i) not in waiting]
            chosen, queue = queue[: self.batch_ids], queue[self.batch_ids :]
            batch: list[int] = []
            for label in chosen:
                for pool in self.pools[label]:
                    replace = pool.size < self.num_pos
                    batch += rng.choice(pool, size=self.num_pos, replace=replace).tolist()
            yield batch


def collate(batch):
    """Stack ``(image, label, modality, index)`` items into tensors."""
    images, labels, modality, index = zip(*batch, strict=True)
    return (
        torch.stack(images),
        torch.tensor(labels, dtype=torch.int64),
        torch.tensor(modality, dtype=torch.int64),
        torch.tensor(index, dtype=torch.int64),
    )
