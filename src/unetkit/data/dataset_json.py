"""nnU-Net's ``dataset.json``: its ``labels`` (v1 ``{"0": "background"}`` or v2
``{"background": 0}``) and channel names (``channel_names``, v1 ``modality``), read strictly: a
file in neither form is an error naming the file and the key, never a traceback and never
silently ignored.
"""

from __future__ import annotations

import json
from pathlib import Path

from unetkit.data.geometry import DatasetError


def read_dataset_json(root: str | Path) -> tuple[dict[int, str] | None, list[str] | None]:
    """Labels ``{value: name}`` and channel names from an nnU-Net ``dataset.json`` (v1 or v2).

    Raises:
        DatasetError: not JSON, or ``labels`` / ``channel_names`` (``modality``) not in either
            nnU-Net form; the message names the file and the key.
    """
    path = Path(root) / "dataset.json"
    if not path.is_file():
        return None, None
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DatasetError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(meta, dict):
        raise DatasetError(f"{path}: expected a JSON object with 'labels' (and "
                           f"'channel_names'), found a {_json_type(meta)}")
    raw = meta.get("labels")
    labels = _json_labels(raw, path) if raw is not None else None
    key = "channel_names" if "channel_names" in meta else "modality"
    channels = meta.get(key)
    if channels is None or channels == {}:
        return labels, None
    if not isinstance(channels, dict) or not all(_is_index(k) for k in channels):
        raise DatasetError(f"{path}: '{key}' must map channel numbers to names, e.g. "
                           f'{{"0": "CT"}}; found a {_json_type(channels)}')
    return labels, [str(channels[k]) for k in sorted(channels, key=int)]


def _json_labels(raw: object, path: Path) -> dict[int, str]:
    """``dataset.json``'s ``labels``: v1 ``{"0": "background"}`` or v2 ``{"background": 0}``
    (region lists such as ``{"whole": [1, 2]}`` are not label values and are left out)."""
    example = '{"background": 0, "tumour": 1} (or {"0": "background", "1": "tumour"})'
    if not isinstance(raw, dict) or not raw:
        raise DatasetError(f"{path}: 'labels' must map names to label values, e.g. {example}; "
                           f"found a{'n empty' if raw == {} else ''} {_json_type(raw)}")
    if all(_is_index(k) for k in raw):  # v1
        return {int(k): str(v) for k, v in raw.items()}
    values = {name: v for name, v in raw.items() if not isinstance(v, list)}
    bad = [name for name, v in values.items() if not _is_index(v)]
    if bad:
        raise DatasetError(f"{path}: 'labels' entry {bad[0]!r}: {values[bad[0]]!r} is not a "
                           f"label value (a whole number >= 0); expected e.g. {example}")
    return {int(v): str(name) for name, v in values.items()}


def _is_index(value: object) -> bool:
    """A whole number >= 0, or its decimal string (JSON object keys are strings)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 0
    return isinstance(value, str) and value.strip().isdigit()


def _json_type(value: object) -> str:
    return {dict: "mapping", list: "list", str: "string", bool: "boolean"}.get(
        type(value), "number" if isinstance(value, (int, float)) else "null")
