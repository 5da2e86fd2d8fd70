"""Channel files of a case (nnU-Net's ``case_0000``, ``case_0001``, ...), checked without
reading a pixel: which files are channels of one case, and which cases miss one.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from unetkit.data.geometry import split_suffix


def split_numbered(images: dict[str, list[tuple[int, Path]]], mask_dir: Path | None) -> None:
    """Undo the channel grouping of files that are cases of their own: ``frame_0001.png`` and
    ``frame_0002.png`` whose masks are named ``frame_0001``/``frame_0002``, not ``frame``."""
    stems = {split_suffix(p)[0] for p in mask_dir.iterdir()} if mask_dir is not None else set()
    for case_id, members in list(images.items()):
        own = [path.name if path.is_dir() else split_suffix(path)[0] for _, path in members]
        if case_id not in stems and own[0] != case_id and all(stem in stems for stem in own):
            del images[case_id]
            images.update({stem: [(0, path)] for stem, (_, path) in zip(own, members,
                                                                        strict=True)})


def channel_problems(images: dict[str, list[tuple[int, Path]]],
                     declared: list[str] | None = None) -> list[str]:
    """Cases whose channel files are not ``_0000`` .. ``_{n-1}``: a missing channel (only
    ``_0001``, a gap ``_0000, _0002``) or fewer or more files than the other cases have (or than
    ``dataset.json``'s ``channel_names`` declare, unless every case is one ``_0000`` file).
    One message per case, naming it, its folder
    and the missing or extra channel suffixes."""
    one_file_each = all(len(members) == 1 for members in images.values())
    if declared and not (one_file_each and all(c == 0 for m in images.values() for c, _ in m)):
        # One ``_0000`` file per case may hold every declared channel (an RGB photograph,
        # nnU-Net's natural-image reader); the channel count is then checked when it is read.
        expected, why = len(declared), f"dataset.json declares {len(declared)} channels"
    else:
        spans = Counter(max(c for c, _ in members) + 1 for members in images.values())
        expected = max(spans, key=lambda n: (spans[n], n)) if spans else 0
        why = f"the other cases have {expected} channel file(s)"
    problems = []
    for case_id, members in sorted(images.items()):
        found = {c for c, _ in members}
        missing = sorted(set(range(expected)) - found)
        extra = sorted(found - set(range(expected)))
        folder = members[0][1].parent
        names = ", ".join(f"_{c:04d}" for c in sorted(found))
        if missing:
            problems.append(f"{folder}: case {case_id!r} misses channel file(s) "
                            f"{', '.join(f'_{c:04d}' for c in missing)} (has {names}; {why})")
        elif extra:
            problems.append(f"{folder}: case {case_id!r} has channel file(s) "
                            f"{', '.join(f'_{c:04d}' for c in extra)} beyond _{expected - 1:04d} "
                            f"({why})")
    return problems
