"""Where restored files go, checked before anything runs: never over an input, never two inputs
onto one output name, never an output the input's form cannot be written to.
"""

from __future__ import annotations

import os
import pathlib
from typing import Union

from restore_jax.inference.checkpoint_io import RestorerError

PathLike = Union[str, os.PathLike]
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")

__all__ = ["FolderRestoreError", "IMAGE_EXTENSIONS", "check_not_input", "check_output_form", "plan_folder"]


class FolderRestoreError(RestorerError):
    """Some images of a folder could not be restored; all the others were written.

    ``written``: the written paths; ``failed``: ``[(input path, reason)]``; ``total``: the number
    of images in the folder. ``restore-jax restore`` exits with code 4 on it."""

    def __init__(self, in_dir: PathLike, out_dir: PathLike, written, failed, total: int):
        self.in_dir, self.out_dir = pathlib.Path(in_dir), pathlib.Path(out_dir)
        self.written = list(written)
        self.failed = [(pathlib.Path(p), str(r)) for p, r in failed]
        self.total = int(total)

        def reason(p: pathlib.Path, r: str) -> str:
            return r[len(str(p)) + 2 :] if r.startswith(f"{p}: ") else r  # the path is listed already

        lines = "\n".join(f"  {p.name}: {reason(p, r)}" for p, r in self.failed)
        super().__init__(
            f"{len(self.failed)} of {self.total} image(s) in {self.in_dir} could not be restored "
            f"(the other {len(self.written)} were written to {self.out_dir}):\n{lines}"
        )


def _same_file(a: pathlib.Path, b: pathlib.Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)  # also hard links
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_not_input(in_path: PathLike, out_path: PathLike) -> None:
    """:class:`RestorerError` if writing ``out_path`` would overwrite the input ``in_path`` (the
    same file once links and relative parts are resolved)."""
    a, b = pathlib.Path(in_path).expanduser(), pathlib.Path(out_path).expanduser()
    if _same_file(a, b):
        raise RestorerError(
            f"output {b} is the input file {a}: restoring would overwrite it; choose another output path"
        )


def check_output_form(out_path: PathLike, info) -> None:
    from restore_jax.inference.image_io import check_restored_output

    try:
        check_restored_output(out_path, info)
    except ValueError as e:
        raise RestorerError(str(e)) from None


def plan_folder(in_dir: PathLike, out_dir: PathLike) -> list[tuple[pathlib.Path, pathlib.Path]]:
    """``(input, output)`` pairs of :meth:`Restorer.restore_folder` (nothing is read or written).

    Every ``IMAGE_EXTENSIONS`` file of ``in_dir`` (sorted, not recursive) keeps its name in
    ``out_dir``; formats that cannot be written (``.bmp``, ``.tif``) become ``.png``. Raises
    :class:`RestorerError` when there is no image, ``out_dir`` is ``in_dir`` or a file, an output
    would overwrite an input, or several inputs would get the same output name (``x.bmp`` and
    ``x.png`` both -> ``x.png``): the collision policy is to refuse (rename the files or restore
    them into separate folders), never to overwrite or rename silently."""
    from restore_jax.inference.image_io import IMAGE_OUTPUT_EXTENSIONS

    in_dir, out_dir = pathlib.Path(in_dir).expanduser(), pathlib.Path(out_dir).expanduser()
    if not in_dir.is_dir():
        raise RestorerError(f"input folder {in_dir} does not exist")
    files = sorted(p for p in in_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise RestorerError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {in_dir}")
    if out_dir.exists() and not out_dir.is_dir():
        raise RestorerError(f"output {out_dir} is a file; a folder input needs an output folder")
    if _same_file(in_dir, out_dir):
        raise RestorerError(f"output folder {out_dir} is the input folder {in_dir}: restoring would overwrite the inputs; choose another folder")
    pairs, by_target = [], {}
    for f in files:
        target = out_dir / f.name
        if target.suffix.lower() not in IMAGE_OUTPUT_EXTENSIONS:
            target = target.with_suffix(".png")
        by_target.setdefault(target, []).append(f)
        pairs.append((f, target))
    clashes = {t: fs for t, fs in by_target.items() if len(fs) > 1}
    if clashes:
        listed = "; ".join(f"{' and '.join(f.name for f in fs)} -> {t.name}" for t, fs in list(clashes.items())[:5])
        raise RestorerError(
            f"{sum(map(len, clashes.values()))} images in {in_dir} would be written to the same output name ({listed}); "
            "nothing was restored: rename one of each group or restore them into separate folders"
        )
    inputs = {}
    for g in files:
        st = g.stat()
        inputs[(st.st_dev, st.st_ino)] = g
    for f, target in pairs:  # an existing output that is an input file (through a link)
        try:
            st = target.stat()
        except OSError:
            continue
        g = inputs.get((st.st_dev, st.st_ino))
        if g is not None:
            raise RestorerError(
                f"output {target} (for {f.name}) is the input file {g}: restoring would overwrite it; choose another output folder"
            )
    return pairs
