"""Inputs for the refusal tests: small data folders, PNG decompression bombs, nnU-Net folders
with missing channel files; and the in-process CLI runner."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

runner = CliRunner()


def write_pngs(folder: Path, names: list[str], size: tuple[int, int] = (24, 20)) -> Path:
    """Grey noise PNGs (the format named explicitly: Pillow cannot guess it for ``..png``)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        Image.fromarray(rng.integers(0, 256, size, dtype=np.uint8)).save(folder / name,
                                                                        format="PNG")
    return folder


def png_bomb(path: Path, width: int = 60000, height: int = 60000) -> Path:
    """A valid PNG of a few hundred bytes whose header declares ``width`` x ``height`` grey
    pixels (only a few rows of data follow: decoding would need 3.6 GB)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (width + 1) * 4, 9)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows)
                     + chunk(b"IEND", b""))
    return path


def disks(root: Path, n: int = 3, size: int = 24) -> Path:
    """``images/`` + ``masks/`` of ``n`` PNG cases (a bright disk, mask 0/1)."""
    yy, xx = np.mgrid[:size, :size]
    rng = np.random.default_rng(1)
    for i in range(n):
        mask = (yy - size // 2) ** 2 + (xx - size // 2 - i) ** 2 <= 25
        image = (60 + 120 * mask + rng.normal(0, 10, mask.shape)).clip(0, 255)
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "masks").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.astype(np.uint8)).save(root / "images" / f"c{i}.png")
        Image.fromarray(mask.astype(np.uint8)).save(root / "masks" / f"c{i}.png")
    return root


def nnunet(root: Path, channels: dict[str, list[int]], meta: dict | None = None) -> Path:
    """An nnU-Net folder (imagesTr/ + labelsTr/ + dataset.json) of small NIfTI volumes; case
    ``c`` has the channel files ``channels[c]`` (``_0000`` ...)."""
    import nibabel as nib

    rng = np.random.default_rng(2)
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for case, numbers in channels.items():
        for number in numbers:
            volume = rng.normal(size=(8, 8, 4)).astype(np.float32)
            nib.save(nib.Nifti1Image(volume, np.eye(4)),
                     root / "imagesTr" / f"{case}_{number:04d}.nii.gz")
        mask = np.zeros((8, 8, 4), np.uint8)
        mask[2:5, 2:5, 1:3] = 1
        nib.save(nib.Nifti1Image(mask, np.eye(4)), root / "labelsTr" / f"{case}.nii.gz")
    width = max(max(n) for n in channels.values()) + 1
    default = {"labels": {"background": 0, "x": 1},
               "channel_names": {str(i): f"MR{i}" for i in range(width)}}
    (root / "dataset.json").write_text(json.dumps(default if meta is None else meta))
    return root
