"""2-D image formats (PNG/JPEG/BMP via Pillow), TIFF (tifffile) and NumPy ``.npy``/``.npz``.

Readers return channel-first arrays ``(C, *spatial)`` plus a ``Geometry``; see ``io``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from unetkit.data.geometry import Geometry, ImageFormatError, check_voxels, split_suffix


def read_pil(path: Path, keep_palette: bool, max_voxels: int) -> tuple[np.ndarray, Geometry]:
    """PNG/JPEG/BMP/GIF; the header's size is checked before decoding (``check_voxels``;
    Pillow itself refuses images over twice ``PIL.Image.MAX_IMAGE_PIXELS`` at opening)."""
    from PIL import Image

    try:
        opened = Image.open(path)
    except Image.DecompressionBombError as error:
        raise ImageFormatError(f"{path}: refused before decoding: {error}") from None
    with opened as image:
        check_voxels(path, (len(image.getbands()), image.height, image.width), max_voxels)
        mode = image.mode
        if mode == "P" and not keep_palette:
            image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        elif mode in ("LA", "PA"):
            image = image.convert("L")
        elif mode == "CMYK":
            image = image.convert("RGB")
        array = np.array(image)
    array = array[None] if array.ndim == 2 else np.moveaxis(array, -1, 0)
    if array.shape[0] == 4:  # alpha carries no intensity
        array = array[:3]
    fmt = split_suffix(path)[1].lstrip(".").replace("jpg", "jpeg")
    extra = {"dtype": str(array.dtype), "channels": array.shape[0], "rgb": array.shape[0] == 3,
             "mode": mode}
    return np.ascontiguousarray(array), Geometry(spacing=(1.0, 1.0), format=fmt, extra=extra)


def write_pil(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    if array.ndim != 3 or array.shape[0] not in (1, 3):
        raise ImageFormatError(f"{path}: PNG/JPEG/BMP hold 2-D grey (1, H, W) or RGB (3, H, W) "
                               f"images, got {array.shape}; use .tif, .npy or .nii.gz")
    if array.dtype == np.uint16 and array.shape[0] == 1 and path.suffix.lower() == ".png":
        Image.fromarray(array[0]).save(path, format="PNG")
        return
    if array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.integer) or array.min() < 0 or array.max() > 255:
            raise ImageFormatError(f"{path}: PNG/JPEG/BMP need uint8 (or uint16 grey PNG) values, "
                                   f"got {array.dtype}; use .tif, .npy or .nii.gz for others")
        array = array.astype(np.uint8)
    image = array[0] if array.shape[0] == 1 else np.moveaxis(array, 0, -1)
    Image.fromarray(np.ascontiguousarray(image)).save(path, format=pil_format(path))


def pil_format(path: Path) -> str:
    """Pillow's format name for ``path``'s suffix, passed explicitly: Pillow guesses it with
    ``os.path.splitext``, which finds no extension in a name such as ``..png``."""
    from PIL import Image

    return Image.registered_extensions().get(split_suffix(path)[1], "PNG")


def read_tiff(path: Path, max_voxels: int) -> tuple[np.ndarray, Geometry]:
    """TIFF (first series); its shape is checked before decoding (``check_voxels``)."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        check_voxels(path, tuple(series.shape), max_voxels)
        array = series.asarray()
        axes = series.axes
        meta = (tif.shaped_metadata or [{}])[0] or {}
        imagej = tif.imagej_metadata or {}
    axes = str(meta.get("axes", axes)) if len(str(meta.get("axes", axes))) == array.ndim else axes
    channel_axes = [i for i, a in enumerate(axes) if a in "CS"]
    rgb = "S" in axes
    if len(channel_axes) > 1:
        raise ImageFormatError(f"{path}: TIFF with axes {axes!r} has several channel axes")
    array = np.moveaxis(array, channel_axes[0], 0) if channel_axes else array[None]
    spatial = array.ndim - 1
    if spatial not in (2, 3):
        raise ImageFormatError(f"{path}: TIFF with axes {axes!r} is not a 2-D or 3-D image")
    spacing = meta.get("spacing")
    if spacing is None or len(spacing) != spatial:
        spacing = [1.0] * spatial
        if spatial == 3 and "spacing" in imagej:
            spacing[0] = float(imagej["spacing"])
    extra = {"dtype": str(array.dtype), "channels": array.shape[0], "rgb": rgb}
    return array, Geometry(spacing=tuple(float(s) for s in spacing), format="tiff", extra=extra)


def write_tiff(path: Path, array: np.ndarray, geometry: Geometry) -> None:
    import tifffile

    spatial = array.ndim - 1
    rgb = array.shape[0] == 3 and spatial == 2 and array.dtype == np.uint8
    metadata = {"spacing": [float(s) for s in geometry.spacing]}
    if rgb:
        tifffile.imwrite(path, np.moveaxis(array, 0, -1), photometric="rgb", metadata=metadata)
        return
    axes = ("C" if array.shape[0] > 1 else "") + ("YX" if spatial == 2 else "ZYX")
    data = array if array.shape[0] > 1 else array[0]
    tifffile.imwrite(path, data, photometric="minisblack", metadata={**metadata, "axes": axes})


def read_numpy(path: Path, max_voxels: int) -> tuple[np.ndarray, Geometry]:
    """``.npy`` or ``.npz`` (``data`` or the first array); shapes are read from the array
    headers and checked before the data (``check_voxels``)."""
    if path.suffix.lower() == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            key = "data" if "data" in archive.files else archive.files[0]
            check_voxels(path, _npz_shape(archive, key), max_voxels)
            array = archive[key]
            spacing = archive["spacing"] if "spacing" in archive.files else None
            affine = archive["affine"] if "affine" in archive.files else None
            channel_first = bool(archive["channel_first"]) if "channel_first" in archive.files \
                else False
        if not channel_first:
            array = array[None]
    else:
        mapped = np.load(path, mmap_mode="r", allow_pickle=False)  # the header only
        check_voxels(path, mapped.shape, max_voxels)
        array = np.array(mapped)
        del mapped
        spacing, affine = None, None
        array = array if array.ndim == 4 else array[None]
    spatial = array.ndim - 1
    if spatial not in (2, 3):
        raise ImageFormatError(f"{path}: array of shape {array.shape} is not 2-D or 3-D")
    spacing = tuple(float(s) for s in spacing) if spacing is not None else (1.0,) * spatial
    affine = np.asarray(affine, dtype=np.float64) if affine is not None and affine.size else None
    fmt = path.suffix.lower().lstrip(".")
    extra = {"dtype": str(array.dtype), "channels": array.shape[0]}
    return array, Geometry(spacing=spacing, affine=affine, format=fmt, extra=extra)


def _npz_shape(archive: np.lib.npyio.NpzFile, key: str) -> tuple[int, ...]:
    """The shape in the header of member ``key`` of an ``.npz`` (nothing decompressed beyond
    the header)."""
    with archive.zip.open(f"{key}.npy") as member:
        version = np.lib.format.read_magic(member)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        return tuple(read(member)[0])


def write_numpy(path: Path, array: np.ndarray, geometry: Geometry) -> None:
    if path.suffix.lower() == ".npz":
        affine = geometry.affine if geometry.affine is not None else np.zeros(0)
        np.savez_compressed(path, data=array, spacing=np.asarray(geometry.spacing),
                            affine=affine, channel_first=np.asarray(True))
        return
    if array.shape[0] == 1:
        np.save(path, array[0])
    elif array.ndim == 4:
        np.save(path, array)
    else:
        raise ImageFormatError(f"{path}: a multi-channel 2-D array is ambiguous in .npy (it would "
                               "read back as a volume); use .npz")
