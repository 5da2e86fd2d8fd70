"""``OUT/predict.json``: what ``unetkit predict`` made each mask in its output folder from.

Schema (``format`` 1)::

    format      1
    decision    {"threshold": float or null, "tta_axes": [int, ...]}: of the last batch; a
                region model adds "regions": [{"name", "labels"}, ...] (evaluate scores them)
    cases       {mask file name: [absolute path of each input file (one per channel)]}

Written by ``predict_files`` before the first mask: every process of a sharded batch writes the
same whole-batch content, as a temporary file renamed into place, so a reader never sees half a
file. A second batch into the same folder adds its cases (later ones win); a ``predict.json``
there that is a symbolic link or not unetkit's refuses the batch before anything is written.
``unetkit evaluate`` reads it to draw the report's overlays on the images the masks were
predicted from, without ``--images``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unetkit.infer.outputs import OutputPathError
from unetkit.runtime.atomic import write_text

log = logging.getLogger(__name__)

MANIFEST = "predict.json"
FORMAT = 1


@dataclass
class Manifest:
    """A read ``predict.json``: ``cases`` ``{mask file name: input files}`` and the
    ``decision`` (threshold, TTA axes) of the batch that wrote it last."""

    cases: dict[str, list[Path]] = field(default_factory=dict)
    decision: dict[str, Any] = field(default_factory=dict)


def decision_record(infer: Any, regions: Sequence[Any] | None = None) -> dict[str, Any]:
    """What decided the masks: ``{"threshold": float or None, "tta_axes": [...]}`` of an
    ``InferConfig`` whose ``auto`` threshold is resolved (``Predictor.infer``), and the
    ``regions`` (``config.regions.Region``) of a region model."""
    threshold = infer.threshold if isinstance(infer.threshold, float) else None
    record = {"threshold": threshold, "tta_axes": [int(a) for a in infer.tta_axes]}
    return record | ({"regions": [r.model_dump() for r in regions]} if regions else {})


def write_manifest(out_dir: Path, cases: Iterable[tuple[Path, Sequence[Path]]],
                   decision: dict[str, Any]) -> Path:
    """Record ``(mask path, input files)`` of every case in ``out_dir/predict.json``, keeping
    the cases an earlier batch recorded there.

    Raises:
        OutputPathError: ``predict.json`` there is a symbolic link or not a unetkit record
            (nothing is written then, and no mask either: this runs before the first).
    """
    path = out_dir / MANIFEST
    entries: dict[str, list[Path]] = {}
    if path.is_symlink():
        raise OutputPathError(f"{path}: is a symbolic link; unetkit never writes through one")
    if path.exists():
        try:
            entries = _parse(path).cases
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise OutputPathError(f"{path}: exists and is not a record of unetkit predict "
                                  f"({error}); move it or choose another -o") from None
    entries.update({Path(mask).name: [Path(p).resolve() for p in files]
                    for mask, files in cases})
    text = json.dumps({"format": FORMAT, "decision": decision,
                       "cases": {k: [str(p) for p in v] for k, v in entries.items()}}, indent=1)
    return write_text(path, text)


def _parse(path: Path) -> Manifest:
    data = json.loads(path.read_text())
    if data.get("format") != FORMAT:
        raise ValueError(f"format {data.get('format')!r}, expected {FORMAT}")
    cases = {str(name): [Path(p) for p in files] for name, files in data["cases"].items()}
    return Manifest(cases, dict(data.get("decision") or {}))


def read_manifest(folder: Path) -> Manifest:
    """``folder/predict.json``; empty when there is none or it cannot be read (then logged:
    the overlays are drawn without their images)."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return Manifest()
    try:
        return _parse(path)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        log.warning("%s: not readable (%s); its input images are not known", path, error)
        return Manifest()
