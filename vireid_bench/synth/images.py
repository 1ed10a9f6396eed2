"""Synthetic visible/infrared person images in the real datasets' directory layouts.

``vireid-bench synth-images --layout sysu-mm01|regdb|llcm OUT_DIR`` renders small
person-like figures per identity so that the whole model pipeline (indexers, samplers,
training, extraction, scoring) runs on a machine without the real datasets.

What an identity is made of (drawn once per identity from the seed):

* **shared** by both modalities: body height, shoulder width, leg length, head size, hair
  length, sleeve length, shorts or trousers, the *geometry* of the shirt pattern (stripes,
  checks, logo) and a bag;
* **visible only**: the colours of shirt, pattern, trousers, shoes, hair and bag;
* **infrared only**: each garment's emissivity (its grey level in the infrared image),
  drawn independently of its colour.

A visible image is the figure drawn in colour under the camera's white balance and
brightness. An infrared image is the *same figure drawn without colour*: every part gets
its emissivity, and the camera applies its own gain, gamma and offset (a modality-specific
intensity mapping), then noise and a slight blur; it is stored as three equal channels, as
SYSU-MM01's infrared images are. Colour therefore says nothing across modalities but
separates identities within the visible modality; emissivity does the same within the
infrared modality; shape and pattern geometry are what the two share. That is the
situation MixER (modality-erased + modality-related features) is built for.

Every camera has its own viewpoint (scale, offset, vertical squash) and lighting, and every
image its own jitter (position, scale, stride, arm swing, left/right facing, background
clutter, noise).

Calibration knobs (``write_synthetic_dataset`` arguments, ``synth-images`` options; the
defaults render exactly what earlier versions rendered, byte for byte):

* ``shared`` (0..1, default 0): cross-modal cues beyond geometry. Each part's infrared
  emissivity is pulled towards the luminance of its visible colour,
  ``ir <- (1 - shared) * ir + shared * (0.15 + 0.75 * luma(rgb))``: at 0 the grey levels
  say nothing about the colours (today's data), at 1 an infrared image is a grey-level
  version of the visible one up to the cameras' intensity mappings.
* ``nuisance`` (>= 0, default 1): scales every nuisance around its centre: the cameras'
  viewpoint and lighting spread, the per-image jitter (position, scale, pose, value
  noise, brightness), the background clutter (number of rectangles) and the sensor noise.
  0 renders every image of a person in a camera alike; 2 doubles the spread.
* ``ids`` (the identity count) sets how many people must be told apart.

``SYNTH_IMAGE_PRESETS`` in :mod:`vireid_bench.synth.defaults` names packaged settings of
these knobs (``synth-images --preset NAME``).

Layouts written (paths relative to OUT_DIR):

* ``sysu-mm01``: ``cam1..cam6/<pid:04d>/<n:04d>.jpg`` (visible cameras 1, 2, 4, 5; infrared
  3, 6) and ``exp/train_id.txt``, ``exp/val_id.txt``, ``exp/test_id.txt`` (one line of
  comma-separated ids).
* ``regdb``: ``Visible/<pid>/...bmp``, ``Thermal/<pid>/...bmp`` (one camera per modality)
  and ``idx/{train,test}_{visible,thermal}_{t}.txt`` for t = 1..10, lines ``path label``
  (label = the identity's 0-based index within that split; each trial a random half split).
* ``llcm``: ``{train,test}_vis/cam<k>/<pid:04d>/<pid>_c<kk>_s<seq>_f<n>_vis.jpg`` (visible
  cameras 1-3) and ``{train,test}_nir/...nir.jpg`` (infrared cameras 1, 2, 4; a camera number
  is one physical camera, as in LLCM), ``idx/train_vis.txt`` / ``idx/train_nir.txt`` (lines
  ``path label``), ``idx/train_id.txt``, ``idx/test_id.txt``.

Only NumPy and Pillow are used (Pillow comes with the ``model`` extra and the ``synth``
extra); no torch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from vireid_bench.errors import VireidBenchError
from vireid_bench.synth.defaults import CAMERAS, LAYOUTS, PILLOW_HINT

REGDB_TRIALS = 10


def _rng(*keys: object) -> np.random.Generator:
    """A generator seeded by a stable hash of ``keys`` (independent of PYTHONHASHSEED)."""
    digest = hashlib.sha256(repr(keys).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def import_pillow():
    try:
        from PIL import Image, ImageDraw, ImageFilter
    except ImportError as exc:  # pragma: no cover - exercised only without Pillow
        raise VireidBenchError(PILLOW_HINT) from exc
    return Image, ImageDraw, ImageFilter


# --------------------------------------------------------------------------- identities


@dataclass(frozen=True)
class Identity:
    """Appearance of one synthetic person (fractions are of the image size)."""

    height: float  # figure height / image height
    shoulder: float  # shoulder width / image width
    leg_ratio: float  # leg length / figure height
    head: float  # head height / figure height
    hair: int  # 0 short, 1 medium, 2 long
    long_sleeves: bool
    trousers: bool
    pattern: int  # 0 none, 1 horizontal stripes, 2 vertical stripes, 3 checks, 4 logo
    pattern_period: float  # stripe period / shoulder width
    bag: int  # 0 none, 1 shoulder bag, 2 backpack
    # visible colours (RGB 0..1)
    shirt_rgb: tuple[float, float, float]
    pattern_rgb: tuple[float, float, float]
    pants_rgb: tuple[float, float, float]
    shoes_rgb: tuple[float, float, float]
    hair_rgb: tuple[float, float, float]
    bag_rgb: tuple[float, float, float]
    skin_rgb: tuple[float, float, float]
    # infrared emissivities (0..1)
    shirt_ir: float
    pattern_ir: float
    pants_ir: float
    shoes_ir: float
    hair_ir: float
    bag_ir: float
    skin_ir: float


def _colour(rng: np.random.Generator) -> tuple[float, float, float]:
    import colorsys

    hue = rng.uniform(0, 1)
    saturation = rng.uniform(0.35, 1.0)
    value = rng.uniform(0.25, 1.0)
    r, g, b = colorsys.hsv_to_rgb(hue, saturation, value)
    return (r, g, b)


def _toward(value: float, centre: float, factor: float) -> float:
    """``centre + factor * (value - centre)``; ``value`` itself, bit for bit, at 1."""
    return value if factor == 1.0 else centre + factor * (value - centre)


def _luma(rgb: tuple[float, float, float]) -> float:
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


def share_cues(ident: Identity, shared: float) -> Identity:
    """``ident`` with each part's emissivity pulled towards its visible luminance.

    ``ir <- (1 - shared) * ir + shared * (0.15 + 0.75 * luma(rgb))``; ``shared = 0``
    returns ``ident`` unchanged.
    """
    if shared == 0.0:
        return ident
    changes = {
        f"{part}_ir": (1 - shared) * getattr(ident, f"{part}_ir")
        + shared * (0.15 + 0.75 * _luma(getattr(ident, f"{part}_rgb")))
        for part in _PARTS
    }
    return replace(ident, **changes)


def make_identity(seed: int, pid: int, shared: float = 0.0) -> Identity:
    """Draw identity ``pid``'s appearance from ``seed`` (deterministic).

    ``shared`` couples the infrared emissivities to the visible colours
    (:func:`share_cues`); the draws themselves do not depend on it.
    """
    rng = _rng("identity", seed, pid)
    skin = rng.uniform(0.35, 0.95)
    return share_cues(_draw_identity(rng, skin), shared)


def _draw_identity(rng: np.random.Generator, skin: float) -> Identity:
    return Identity(
        height=float(rng.uniform(0.74, 0.94)),
        shoulder=float(rng.uniform(0.36, 0.6)),
        leg_ratio=float(rng.uniform(0.4, 0.54)),
        head=float(rng.uniform(0.11, 0.16)),
        hair=int(rng.integers(0, 3)),
        long_sleeves=bool(rng.integers(0, 2)),
        trousers=bool(rng.integers(0, 2)),
        pattern=int(rng.integers(0, 5)),
        pattern_period=float(rng.uniform(0.18, 0.4)),
        bag=int(rng.integers(0, 3)),
        shirt_rgb=_colour(rng),
        pattern_rgb=_colour(rng),
        pants_rgb=_colour(rng),
        shoes_rgb=_colour(rng),
        hair_rgb=tuple(float(c) for c in rng.uniform(0.05, 0.55) * np.array([1.0, 0.8, 0.6])),
        bag_rgb=_colour(rng),
        skin_rgb=(skin, skin * 0.78, skin * 0.62),
        shirt_ir=float(rng.uniform(0.2, 0.85)),
        pattern_ir=float(rng.uniform(0.2, 0.85)),
        pants_ir=float(rng.uniform(0.2, 0.85)),
        shoes_ir=float(rng.uniform(0.1, 0.5)),
        hair_ir=float(rng.uniform(0.15, 0.45)),
        bag_ir=float(rng.uniform(0.1, 0.7)),
        skin_ir=float(rng.uniform(0.85, 1.0)),
    )


@dataclass(frozen=True)
class Camera:
    """Viewpoint and lighting of one camera."""

    scale: float
    dx: float
    dy: float
    squash: float
    gains: tuple[float, float, float]  # visible white balance
    brightness: float
    background: tuple[float, float, float]
    ir_gain: float
    ir_gamma: float
    ir_offset: float
    noise: float


def make_camera(seed: int, layout: str, cam: int, nuisance: float = 1.0) -> Camera:
    """Draw camera ``cam``'s viewpoint and lighting (one camera number = one view).

    ``nuisance`` scales each draw's distance from the middle of its range (1: as drawn).
    """
    rng = _rng("camera", seed, layout, cam)
    k = nuisance

    def draw(low: float, high: float, size: int | None = None):
        values = rng.uniform(low, high, size=size)
        if size is None:
            return _toward(float(values), (low + high) / 2, k)
        return tuple(_toward(float(v), (low + high) / 2, k) for v in values)

    return Camera(
        scale=draw(0.86, 1.04),
        dx=draw(-0.08, 0.08),
        dy=draw(-0.03, 0.03),
        squash=draw(0.92, 1.08),
        gains=draw(0.8, 1.2, 3),
        brightness=draw(0.65, 1.15),
        background=tuple(float(c) for c in rng.uniform(0.2, 0.8, size=3)),
        ir_gain=draw(0.75, 1.15),
        ir_gamma=draw(0.7, 1.4),
        ir_offset=draw(0.0, 0.15),
        noise=float(rng.uniform(0.01, 0.04)) * k,
    )


# --------------------------------------------------------------------------- rendering


def _ordered(box) -> list[float]:
    """``[x0, y0, x1, y1]`` with ``x0 <= x1`` and ``y0 <= y1``.

    Some parts are placed with fixed pixel offsets (``torso_top + 2``...), so at very small
    render sizes a part's far edge can land before its near edge; Pillow refuses such a
    box. Ordering the corners draws the (tiny) part instead; boxes already in order, i.e.
    every box at the usual sizes, are passed on unchanged, so those renders do not change.
    """
    x0, y0, x1, y1 = box
    return [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]


def _rectangle(draw, box, **kwargs) -> None:
    draw.rectangle(_ordered(box), **kwargs)


def _ellipse(draw, box, **kwargs) -> None:
    draw.ellipse(_ordered(box), **kwargs)


def _draw_figure(draw, ident: Identity, box: tuple[float, float, float, float], paint, pose):
    """Draw the figure inside ``box`` (x0, y0, width, height) with ``paint(part) -> fill``."""
    x0, y0, width, height = box
    cx = x0 + width / 2
    head_h = ident.head * height
    head_w = head_h * 0.8
    leg_h = ident.leg_ratio * height
    torso_top = y0 + head_h * 1.05
    torso_bottom = y0 + height - leg_h
    shoulder = ident.shoulder * width
    hip = shoulder * 0.78
    stride, swing = pose

    # legs
    leg_w = hip * 0.42
    for side in (-1, 1):
        foot_x = cx + side * (hip * 0.25) + side * stride * width * 0.5
        top_x = cx + side * hip * 0.25
        points = [
            (top_x - leg_w / 2, torso_bottom),
            (top_x + leg_w / 2, torso_bottom),
            (foot_x + leg_w / 2, y0 + height - leg_h * 0.06),
            (foot_x - leg_w / 2, y0 + height - leg_h * 0.06),
        ]
        draw.polygon(points, fill=paint("skin"))
        cover = 1.0 if ident.trousers else 0.45
        cut = torso_bottom + (y0 + height - leg_h * 0.06 - torso_bottom) * cover
        t = cover
        cut_x = top_x + (foot_x - top_x) * t
        draw.polygon(
            [points[0], points[1], (cut_x + leg_w / 2, cut), (cut_x - leg_w / 2, cut)],
            fill=paint("pants"),
        )
        _rectangle(
            draw,
            [foot_x - leg_w * 0.6, y0 + height - leg_h * 0.08, foot_x + leg_w * 0.7, y0 + height],
            fill=paint("shoes"),
        )
    # arms
    arm_w = shoulder * 0.2
    arm_len = (torso_bottom - torso_top) * 1.05
    for side in (-1, 1):
        sx = cx + side * (shoulder / 2 - arm_w / 2)
        hand_x = sx + side * arm_w * 0.3 + side * swing * width * 0.5
        hand_y = torso_top + arm_len
        points = [
            (sx - arm_w / 2, torso_top),
            (sx + arm_w / 2, torso_top),
            (hand_x + arm_w / 2, hand_y),
            (hand_x - arm_w / 2, hand_y),
        ]
        draw.polygon(points, fill=paint("skin"))
        frac = 0.92 if ident.long_sleeves else 0.35
        sl_x = sx + (hand_x - sx) * frac
        sl_y = torso_top + arm_len * frac
        draw.polygon(
            [points[0], points[1], (sl_x + arm_w / 2, sl_y), (sl_x - arm_w / 2, sl_y)],
            fill=paint("shirt"),
        )
    # torso (a trapezoid: shoulders to hips)
    torso = [
        (cx - shoulder / 2, torso_top),
        (cx + shoulder / 2, torso_top),
        (cx + hip / 2, torso_bottom),
        (cx - hip / 2, torso_bottom),
    ]
    draw.polygon(torso, fill=paint("shirt"))
    # pattern geometry (shared); its fill is modality-specific
    period = max(2.0, ident.pattern_period * shoulder)
    left, right = cx - hip / 2, cx + hip / 2
    if ident.pattern in (1, 3):
        y = torso_top + period * 0.5
        while y < torso_bottom - period * 0.25:
            _rectangle(draw, [left, y, right, y + period * 0.45], fill=paint("pattern"))
            y += period
    if ident.pattern in (2, 3):
        x = left + period * 0.3
        while x < right - period * 0.2:
            _rectangle(
                draw, [x, torso_top + 1, x + period * 0.4, torso_bottom], fill=paint("pattern")
            )
            x += period
    if ident.pattern == 4:
        size = shoulder * 0.32
        ty = torso_top + (torso_bottom - torso_top) * 0.3
        _ellipse(draw, [cx - size / 2, ty, cx + size / 2, ty + size], fill=paint("pattern"))
    # bag
    if ident.bag == 1:
        bw = shoulder * 0.35
        by = torso_bottom - (torso_bottom - torso_top) * 0.25
        draw.line(
            [(cx - shoulder / 2, torso_top), (cx + hip / 2 + bw / 2, by)],
            fill=paint("bag"),
            width=max(1, int(width * 0.03)),
        )
        _rectangle(draw, [cx + hip / 2, by, cx + hip / 2 + bw, by + bw * 0.8], fill=paint("bag"))
    elif ident.bag == 2:
        _rectangle(
            draw,
            [
                cx - shoulder * 0.42,
                torso_top + 2,
                cx - shoulder * 0.05,
                torso_top + shoulder * 0.35,
            ],
            fill=paint("bag"),
        )
    # head and hair
    hx0, hy0 = cx - head_w / 2, y0
    _ellipse(draw, [hx0, hy0, hx0 + head_w, hy0 + head_h], fill=paint("skin"))
    hair_len = (0.35, 0.7, 1.5)[ident.hair] * head_h
    _ellipse(draw, [hx0 - 1, hy0 - 1, hx0 + head_w + 1, hy0 + head_h * 0.45], fill=paint("hair"))
    if ident.hair > 0:
        _rectangle(
            draw,
            [hx0 - 1, hy0 + head_h * 0.2, hx0 + head_w * 0.22, hy0 + hair_len],
            fill=paint("hair"),
        )
        _rectangle(
            draw,
            [hx0 + head_w * 0.78, hy0 + head_h * 0.2, hx0 + head_w + 1, hy0 + hair_len],
            fill=paint("hair"),
        )


_PARTS = ("shirt", "pattern", "pants", "shoes", "hair", "bag", "skin")


def render(
    ident: Identity,
    camera: Camera,
    infrared: bool,
    rng: np.random.Generator,
    size: tuple[int, int] = (128, 64),
    supersample: int = 2,
    nuisance: float = 1.0,
) -> np.ndarray:
    """Render one image; return uint8 [H, W, 3] (three equal channels when infrared).

    ``nuisance`` scales the per-image jitter around its centre and the number of clutter
    rectangles (1: as drawn; the random draws are the same at every value).
    """
    Image, ImageDraw, ImageFilter = import_pillow()
    height, width = size
    big_h, big_w = height * supersample, width * supersample
    k = nuisance

    scale = camera.scale * _toward(rng.uniform(0.94, 1.04), 0.99, k)
    fig_h = ident.height * big_h * scale * camera.squash
    fig_w = big_w * scale
    x0 = (big_w - fig_w) / 2 + (camera.dx + _toward(rng.uniform(-0.05, 0.05), 0.0, k)) * big_w
    y0 = (big_h - fig_h) / 2 + (camera.dy + _toward(rng.uniform(-0.03, 0.03), 0.0, k)) * big_h
    pose = (_toward(rng.uniform(-0.1, 0.1), 0.0, k), _toward(rng.uniform(-0.08, 0.08), 0.0, k))

    if infrared:
        background = _toward(rng.uniform(0.05, 0.3), 0.175, k)
        canvas = Image.new("L", (big_w, big_h), int(background * 255))
        draw = ImageDraw.Draw(canvas)
        clutter_level = (0.05, 0.45)
        values = {part: getattr(ident, f"{part}_ir") for part in _PARTS}
        values = {
            part: float(np.clip(v + _toward(rng.normal(0, 0.03), 0.0, k), 0, 1))
            for part, v in values.items()
        }

        def paint(part: str) -> int:
            return int(values[part] * 255)
    else:
        base = np.array(camera.background) * _toward(rng.uniform(0.8, 1.2), 1.0, k)
        canvas = Image.new("RGB", (big_w, big_h), tuple(int(c * 255) for c in np.clip(base, 0, 1)))
        draw = ImageDraw.Draw(canvas)
        clutter_level = (0.1, 0.9)

        def paint(part: str) -> tuple[int, int, int]:
            rgb = np.clip(np.array(getattr(ident, f"{part}_rgb")), 0, 1)
            return tuple(int(c * 255) for c in rgb)

    clutter = int(rng.integers(2, 5))
    for _ in range(clutter if k == 1.0 else int(round(clutter * k))):
        cx, cy = rng.uniform(0, big_w), rng.uniform(0, big_h)
        w, h = rng.uniform(0.1, 0.5) * big_w, rng.uniform(0.05, 0.3) * big_h
        level = rng.uniform(*clutter_level, size=1 if infrared else 3)
        fill = int(level[0] * 255) if infrared else tuple(int(c * 255) for c in level)
        draw.rectangle([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], fill=fill)

    _draw_figure(draw, ident, (x0, y0, fig_w, fig_h), paint, pose)
    if rng.uniform() < 0.5:
        canvas = canvas.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if infrared:
        canvas = canvas.filter(ImageFilter.GaussianBlur(radius=supersample * 0.6))
    canvas = canvas.resize((width, height), Image.Resampling.BILINEAR)
    pixels = np.asarray(canvas, dtype=np.float32) / 255.0
    noise = camera.noise * rng.uniform(0.7, 1.3)
    if infrared:
        pixels = camera.ir_offset + camera.ir_gain * np.power(pixels, camera.ir_gamma)
        pixels = pixels + rng.normal(0, noise, size=pixels.shape)
        pixels = np.repeat(np.clip(pixels, 0, 1)[:, :, None], 3, axis=2)
    else:
        light = camera.brightness * _toward(rng.uniform(0.85, 1.15), 1.0, k)
        pixels = pixels * np.array(camera.gains, dtype=np.float32) * light
        pixels = pixels + rng.normal(0, noise, size=pixels.shape)
        pixels = np.clip(pixels, 0, 1)
    return (pixels * 255 + 0.5).astype(np.uint8)


# --------------------------------------------------------------------------- layouts


@dataclass(frozen=True)
class SynthImage:
    """One rendered image: its path relative to the dataset root and its labels."""

    path: str
    pid: int
    cam: int
    modality: int  # 0 visible, 1 infrared


def _save(root: Path, relative: str, pixels: np.ndarray) -> None:
    Image, _, _ = import_pillow()
    target = root / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(pixels)
    if relative.endswith(".jpg"):
        image.save(target, quality=92)
    else:
        image.save(target)


def _split_ids(pids: Sequence[int], test_fraction: float, rng: np.random.Generator):
    order = rng.permutation(len(pids))
    n_test = max(1, min(len(pids) - 1, int(round(len(pids) * test_fraction))))
    test = sorted(int(pids[i]) for i in order[:n_test])
    train = sorted(int(pids[i]) for i in order[n_test:])
    return train, test


def _ids_line(ids: Sequence[int]) -> str:
    return ",".join(str(i) for i in ids) + "\n"


def write_synthetic_dataset(
    out_dir: str | Path,
    layout: str,
    *,
    ids: int = 40,
    per_cam: int = 4,
    size: tuple[int, int] = (128, 64),
    test_fraction: float = 0.5,
    seed: int = 0,
    shared: float = 0.0,
    nuisance: float = 1.0,
) -> list[SynthImage]:
    """Render a synthetic dataset in ``layout``'s directory structure under ``out_dir``.

    Args:
        layout: ``"sysu-mm01"``, ``"regdb"`` or ``"llcm"``.
        ids: number of identities (ids 1..ids); each appears in every camera.
        per_cam: images per (identity, camera) (RegDB: per identity and modality).
        size: (height, width) of every image.
        test_fraction: share of identities in the test split (RegDB: per trial; its
            real protocol splits half/half).
        seed: everything (identities, cameras, splits, jitter) derives from it.
        shared: cross-modal cue strength, 0..1 (:func:`share_cues`; 0: none beyond the
            shared geometry).
        nuisance: scale of the camera and per-image nuisances, >= 0 (1: the default
            spread).

    Returns:
        Every image written, in writing order.
    """
    if layout not in LAYOUTS:
        raise VireidBenchError(f"unknown layout {layout!r} (valid: {', '.join(LAYOUTS)})")
    minimum = 3 if layout == "sysu-mm01" else 2
    if ids < minimum:
        raise VireidBenchError(
            f"{layout} needs at least {minimum} identities (train{', val' * (minimum == 3)}, test)"
        )
    if per_cam < 1:
        raise VireidBenchError("need at least 1 image per identity and camera")
    if not 0.0 <= shared <= 1.0:
        raise VireidBenchError(f"--shared {shared}: must be between 0 and 1")
    if not 0.0 <= nuisance <= 10.0:
        raise VireidBenchError(f"--nuisance {nuisance}: must be between 0 and 10")
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    pids = list(range(1, ids + 1))
    visible_cams, infrared_cams = CAMERAS[layout]
    identities = {pid: make_identity(seed, pid, shared) for pid in pids}
    cameras = {
        cam: make_camera(seed, layout, cam, nuisance)
        for cam in sorted(set(visible_cams + infrared_cams))
    }
    written: list[SynthImage] = []

    def emit(relative: str, pid: int, cam: int, modality: int, index: int) -> None:
        rng = _rng("image", seed, layout, pid, cam, modality, index)
        pixels = render(
            identities[pid], cameras[cam], modality == 1, rng, size=size, nuisance=nuisance
        )
        _save(root, relative, pixels)
        written.append(SynthImage(relative, pid, cam, modality))

    split_rng = _rng("split", seed, layout)
    if layout == "sysu-mm01":
        for cam in (1, 2, 3, 4, 5, 6):
            modality = 1 if cam in infrared_cams else 0
            for pid in pids:
                for n in range(1, per_cam + 1):
                    emit(f"cam{cam}/{pid:04d}/{n:04d}.jpg", pid, cam, modality, n)
        train, test = _split_ids(pids, test_fraction, split_rng)
        n_val = max(1, len(train) // 10)  # SYSU-MM01's val_id.txt is never empty
        val, train = train[:n_val], train[n_val:]
        (root / "exp").mkdir(exist_ok=True)
        (root / "exp" / "train_id.txt").write_text(_ids_line(train))
        (root / "exp" / "val_id.txt").write_text(_ids_line(val))
        (root / "exp" / "test_id.txt").write_text(_ids_line(test))
    elif layout == "regdb":
        paths: dict[tuple[int, int], list[str]] = {}
        for pid in pids:
            for modality, folder, tag in ((0, "Visible", "v"), (1, "Thermal", "t")):
                cam = visible_cams[0] if modality == 0 else infrared_cams[0]
                files = []
                for n in range(per_cam):
                    relative = f"{folder}/{pid}/synth_{tag}_{pid:05d}_{n}.bmp"
                    emit(relative, pid, cam, modality, n)
                    files.append(relative)
                paths[(pid, modality)] = files
        (root / "idx").mkdir(exist_ok=True)
        for trial in range(1, REGDB_TRIALS + 1):
            train, test = _split_ids(pids, test_fraction, _rng("regdb-trial", seed, trial))
            for split, split_ids in (("train", train), ("test", test)):
                for modality, name in ((0, "visible"), (1, "thermal")):
                    lines = [
                        f"{p} {label}"
                        for label, pid in enumerate(split_ids)
                        for p in paths[(pid, modality)]
                    ]
                    (root / "idx" / f"{split}_{name}_{trial}.txt").write_text(
                        "\n".join(lines) + "\n"
                    )
    else:  # llcm
        train, test = _split_ids(pids, test_fraction, split_rng)
        label_of = {pid: k for k, pid in enumerate(train)}
        train_lines: dict[str, list[str]] = {"vis": [], "nir": []}
        for part, split_ids in (("train", train), ("test", test)):
            for modality, tag, cams in ((0, "vis", visible_cams), (1, "nir", infrared_cams)):
                for cam in cams:
                    for pid in split_ids:
                        for n in range(1, per_cam + 1):
                            relative = (
                                f"{part}_{tag}/cam{cam}/{pid:04d}/"
                                f"{pid:04d}_c{cam:02d}_s{100000 + pid:06d}_f{n}_{tag}.jpg"
                            )
                            emit(relative, pid, cam, modality, n)
                            if part == "train":
                                train_lines[tag].append(f"{relative} {label_of[pid]}")
        (root / "idx").mkdir(exist_ok=True)
        for tag, lines in train_lines.items():
            (root / "idx" / f"train_{tag}.txt").write_text("\n".join(lines) + "\n")
        (root / "idx" / "train_id.txt").write_text(_ids_line(train))
        (root / "idx" / "test_id.txt").write_text(_ids_line(test))
    knobs = (f" shared={shared}" if shared != 0.0 else "") + (
        f" nuisance={nuisance}" if nuisance != 1.0 else ""
    )
    (root / "SYNTHETIC.txt").write_text(
        f"Synthetic {layout} layout written by vireid-bench synth-images: ids={ids} "
        f"per_cam={per_cam} size={size[0]}x{size[1]} test_fraction={test_fraction} seed={seed}"
        f"{knobs}\n"
    )
    return written
