"""The pseudo-label store: the contract between pseudo-labelling and training.

Layout (read by training and by checks outside the code; keep it exactly)::

    STORE/<clip>/instance/<frame>.png   uint16 single channel: track ids, 0 = no instance
    STORE/<clip>/semantic/<frame>.png   uint8 single channel: pseudo-class, 255 = void
                                        (written by the semantic stage; may be absent)
    STORE/manifest.json                 config + hash, versions, cue backends, label size,
                                        thing_classes (semantic stage), per-clip records
    STORE/.status/<clip>.json           per-clip status record (one writer per clip)
    STORE/.status/.lock                 fcntl lock serialising manifest rebuilds
    STORE/.tmp/<clip>/<frame>.png       semantic stage only, while its clip is labelled: the
                                        raw (unaligned) semantic maps; removed when the clip
                                        ends, and by a restart of the clip

``<clip>`` is the sequence name (a bag's or folder's name for single-clip inputs) and
``<frame>`` the input frame's own file stem, or its stamp in ns for bags.

Every file is written atomically (:mod:`vcups_core.jobs`). Each clip's status record is written
by the one process that labels the clip, and every process rebuilds ``manifest.json`` from all
records at its end under the lock, so shards of one run (``--shard I/N``, torchrun ranks) never
write the same file at the same time, and the last one to finish leaves the complete manifest.

Resume rule: a clip is *finished* if its record says ``done`` under the same config hash and its
``instance/`` folder holds exactly one PNG per recorded frame (with the semantic stage on,
``semantic.weights`` set, also ``semantic/`` and a ``thing_stuff`` statistic in the record; with a
fixed split, also ``semantic/``). Any other clip is redone from scratch (its folder and record
are removed first). A store made under another config is refused unless ``overwrite`` is set,
which removes the clips of the other config.

Manifest keys (``clips`` sorted by name)::

    format, format_version, config (YAML dict), config_hash (sha256 of its canonical JSON),
    versions {vcups, numpy, opencv, torch, python}, cue_backends {cue: backend},
    height, width (label size; null if clips differ),
    thing_stuff {num_classes, n_in, n_all} (semantic stage only: the sum of the done clips'
    statistics), thing_classes, stuff_classes (semantic stage only: :func:`thing_stuff_split` of
    that sum with ``cfg.thing_stuff_threshold``; recomputed at every rebuild, so the last shard to
    finish leaves the split of all clips, equal to an unsharded run's; a config with a fixed
    split, see :func:`fixed_split`, gives exactly that split instead),
    summary {clips, done, failed, interrupted, frames, pending: [clips of the last run's source
    without a record]},
    clips {<clip>: {status, frames, error, seconds, height, width, source, stems[, thing_stuff]}}

Keys that other stages add to the manifest (``extra`` of :func:`write_manifest`) are kept when it
is rebuilt under the same config.

Fixed split: a store whose classes are known beforehand (the synthetic world's ground truth,
:mod:`vcups_core.pseudo.oracle_store`) sets ``fixed_split {thing_classes, stuff_classes}`` in its
config. The manifest then lists exactly these classes whatever the statistics, and a clip is
finished only with its ``semantic/`` PNGs (see :func:`fixed_split`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import cv2
import numpy as np
import numpy.typing as npt

from vcups_core.config import config_to_dict
from vcups_core.jobs import (
    atomic_write_json,
    atomic_write_png,
    file_lock,
    is_temp_file,
    remove_temp_files,
    temp_name_prefix,
)
from vcups_core.types import VideoFrame

if TYPE_CHECKING:
    from vcups_core.pseudo.compose import TrainingTargets

log = logging.getLogger(__name__)

FORMAT = "vcups-pseudo-labels"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
STATUS_DIR = ".status"
LOCK_FILE = ".lock"
INSTANCE_DIR = "instance"
SEMANTIC_DIR = "semantic"
TMP_DIR = ".tmp"
PNG = ".png"

ClipStatus = Literal["done", "failed", "interrupted"]
_OWNED_KEYS = (
    "format",
    "format_version",
    "config",
    "config_hash",
    "versions",
    "cue_backends",
    "height",
    "width",
    "summary",
    "clips",
    "thing_stuff",
    "thing_classes",
    "stuff_classes",
)


class StoreConfigError(ValueError):
    """The store was made under another config (re-run with ``--overwrite`` to replace it)."""


def canonical_json(obj: Any) -> str:
    """Compact JSON with sorted keys: equal data give equal text (the input of the config hash)."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )


def config_hash(cfg: Any) -> str:
    """sha256 (hex) of the canonical JSON of ``config_to_dict(cfg)`` (or of ``cfg`` if a dict)."""
    data = cfg if isinstance(cfg, Mapping) else config_to_dict(cfg)
    return hashlib.sha256(canonical_json(data).encode("ascii")).hexdigest()


def package_versions() -> dict[str, str | None]:
    """Versions of the packages that decide the labels (None if not installed)."""
    from vcups_core import __version__

    def dist(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "vcups": __version__,
        "numpy": np.__version__,
        "opencv": str(cv2.__version__),
        "torch": dist("torch"),
        "python": platform.python_version(),
    }


def check_name(name: str, what: str = "clip name") -> str:
    """``name`` if it is usable as one file or folder name of the store.

    Raises:
        ValueError: empty, a path (``/``, ``\\``), hidden (leading ``.``), or ``manifest.json``.
    """
    if not name or name.startswith(".") or any(c in name for c in "/\\\0") or name == MANIFEST:
        raise ValueError(
            f"{what} {name!r}: must be a plain file name (no '/', not starting with '.')"
        )
    return name


@dataclasses.dataclass(frozen=True)
class ClipRecord:
    """Status of one clip, as stored in ``.status/<clip>.json`` and the manifest.

    Attributes:
        clip: the clip name.
        status: ``"done"`` (every frame labelled), ``"failed"`` or ``"interrupted"``.
        stems: the frame stems labelled (``done``) or read (otherwise), in clip order.
        error: one-line reason when not done, else None.
        seconds: wall time spent on the clip.
        height, width: label size (None if no frame was read).
        config_hash: hash of the config the clip was made with.
        backends: cue backends that ran (``{cue: backend}``).
        source: how to find the clip's frames again (:attr:`SourceClip.source`).
        thing_stuff: the clip's thing/stuff statistic
            (:meth:`~vcups_core.pseudo.thingstuff.ThingStuffStats.to_dict` of its aligned
            semantic maps); None without the semantic stage (then not written to JSON).
    """

    clip: str
    status: ClipStatus
    stems: tuple[str, ...]
    error: str | None
    seconds: float
    height: int | None
    width: int | None
    config_hash: str
    backends: dict[str, str] = dataclasses.field(default_factory=dict)
    source: dict[str, Any] = dataclasses.field(default_factory=dict)
    thing_stuff: dict[str, Any] | None = None

    @property
    def frames(self) -> int:
        return len(self.stems)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "clip": self.clip,
            "status": self.status,
            "frames": self.frames,
            "error": self.error,
            "seconds": round(self.seconds, 3),
            "height": self.height,
            "width": self.width,
            "config_hash": self.config_hash,
            "backends": dict(sorted(self.backends.items())),
            "source": self.source,
            "stems": list(self.stems),
        }
        if self.thing_stuff is not None:
            data["thing_stuff"] = self.thing_stuff
        return data

    def manifest_entry(self) -> dict[str, Any]:
        """The record as listed under ``manifest["clips"][<clip>]``."""
        data = self.to_json()
        for key in ("clip", "config_hash", "backends"):
            del data[key]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ClipRecord:
        """Inverse of :meth:`to_json`.

        Raises:
            ValueError: a key is missing or of the wrong kind.
        """
        try:
            status = str(data["status"])
            if status not in ("done", "failed", "interrupted"):
                raise ValueError(f"status {status!r}")
            stems = tuple(str(s) for s in data["stems"])
            if int(data.get("frames", len(stems))) != len(stems):
                raise ValueError("frames != len(stems)")
            return cls(
                clip=str(data["clip"]),
                status=status,  # type: ignore[arg-type]
                stems=stems,
                error=None if data.get("error") is None else str(data["error"]),
                seconds=float(data.get("seconds", 0.0)),
                height=None if data.get("height") is None else int(data["height"]),
                width=None if data.get("width") is None else int(data["width"]),
                config_hash=str(data["config_hash"]),
                backends={str(k): str(v) for k, v in dict(data.get("backends", {})).items()},
                source=dict(data.get("source", {})),
                thing_stuff=(
                    None if data.get("thing_stuff") is None else dict(data["thing_stuff"])
                ),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a clip status record ({type(exc).__name__}: {exc})") from None


def _read_json(path: Path) -> Any:
    with path.open(encoding="utf-8") as fh:
        return json.load(fh)


def read_records(store: Path) -> dict[str, ClipRecord]:
    """Every clip status record of ``store`` by clip name (unreadable ones are logged, skipped)."""
    out: dict[str, ClipRecord] = {}
    status_dir = Path(store) / STATUS_DIR
    if not status_dir.is_dir():
        return out
    for path in sorted(status_dir.glob("*.json")):
        if path.name.startswith("."):
            continue
        try:
            record = ClipRecord.from_json(_read_json(path))
        except (OSError, ValueError) as exc:
            log.warning("%s: ignored (%s)", path, exc)
            continue
        out[record.clip] = record
    return out


def read_manifest(store: Path) -> dict[str, Any]:
    """``STORE/manifest.json`` as a dict.

    Raises:
        FileNotFoundError: no manifest (not a store, or no run finished a process yet).
        ValueError: the manifest is not valid JSON or not a vcups pseudo-label manifest.
    """
    path = Path(store) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no manifest; not a pseudo-label store (run `vcups pseudo-labels --out "
            f"{store}` first)"
        )
    try:
        data = _read_json(path)
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{path}: not a vcups pseudo-label manifest (format != {FORMAT!r})")
    return data


def build_manifest(
    store: Path,
    cfg: Any,
    *,
    backends: Mapping[str, str] | None = None,
    expected_clips: Sequence[str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest of ``store`` from ``cfg`` and the status records (not written).

    Args:
        store: the store folder.
        cfg: the config (a dataclass) the store is made with.
        backends: cue backends of this process (merged over those of the records).
        expected_clips: every clip of the source (all shards); those without a record are
            listed in ``summary.pending``.
        extra: top-level keys of this stage (JSON-able), e.g. ``{"labels": "oracle-ground-truth"}``;
            kept by later rebuilds under the same config.

    Raises:
        ValueError: an ``extra`` key is one the manifest owns (``config``, ``clips``, ...).
    """
    owned = sorted(set(extra or {}) & set(_OWNED_KEYS))
    if owned:
        raise ValueError(f"manifest keys {owned} are owned by the store; extra cannot set them")
    store = Path(store)
    cfg_dict = config_to_dict(cfg)
    digest = config_hash(cfg_dict)
    records = {n: r for n, r in read_records(store).items() if r.config_hash == digest}
    previous: dict[str, Any] = {}
    with contextlib.suppress(FileNotFoundError, ValueError):
        previous = read_manifest(store)
    merged_backends: dict[str, str] = {}
    for record in records.values():
        merged_backends.update(record.backends)
    merged_backends.update(backends or {})
    sizes = {(r.height, r.width) for r in records.values() if r.height is not None}
    height, width = sizes.pop() if len(sizes) == 1 else (None, None)
    statuses = [r.status for r in records.values()]
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": cfg_dict,
        "config_hash": digest,
        "versions": package_versions(),
        "cue_backends": dict(sorted(merged_backends.items())),
        "height": height,
        "width": width,
    }
    if previous.get("config_hash") == digest:
        manifest.update({k: v for k, v in previous.items() if k not in _OWNED_KEYS})
    manifest.update(extra or {})
    manifest["summary"] = {
        "clips": len(records),
        "done": statuses.count("done"),
        "failed": statuses.count("failed"),
        "interrupted": statuses.count("interrupted"),
        "frames": sum(r.frames for r in records.values() if r.status == "done"),
        "pending": sorted(set(expected_clips or ()) - set(records)),
    }
    manifest["clips"] = {name: records[name].manifest_entry() for name in sorted(records)}
    manifest.update(_thing_stuff_keys(cfg, records.values()))
    return manifest


def semantics_enabled(cfg: Any) -> bool:
    """True if ``cfg`` turns the semantic stage on (``semantics.weights`` set)."""
    return bool(getattr(getattr(cfg, "semantics", None), "weights", ""))


def fixed_split(cfg: Any) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """The thing/stuff split ``cfg`` fixes, or None (the split comes from the clips' statistics).

    A config fixes it with a ``fixed_split`` field (attribute of a dataclass, or key of a
    mapping) holding ``thing_classes`` and ``stuff_classes`` (attributes or keys, sequences of
    pseudo-class ids; things in head order, stuff in semantic-channel order). Being part of the
    config, the split is in the config hash and in ``manifest["config"]``.

    Raises:
        ValueError: ``fixed_split`` is set but has no ``thing_classes``/``stuff_classes``, holds a
            class twice or in both lists, or a class outside ``[0, 255)``.
    """

    def field(obj: Any, name: str) -> Any:
        return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)

    split = field(cfg, "fixed_split")
    if split is None:
        return None
    things, stuff = field(split, "thing_classes"), field(split, "stuff_classes")
    if things is None or stuff is None:
        raise ValueError("fixed_split: expected thing_classes and stuff_classes")
    out = tuple(int(c) for c in things), tuple(int(c) for c in stuff)
    listed = out[0] + out[1]
    if len(set(listed)) != len(listed) or not all(0 <= c < 255 for c in listed):
        raise ValueError(
            f"fixed_split: thing_classes {list(out[0])} and stuff_classes {list(out[1])} must be "
            "disjoint pseudo-classes in [0, 255), without repeats"
        )
    return out


def _thing_stuff_keys(cfg: Any, records: Iterable[ClipRecord]) -> dict[str, Any]:
    """``thing_stuff``, ``thing_classes``, ``stuff_classes`` from the done clips' statistics
    (none without the semantic stage), or the config's fixed split (with the statistics' sum
    if the records have statistics)."""
    from vcups_core.pseudo.thingstuff import ThingStuffStats, thing_stuff_split

    parts = [
        ThingStuffStats.from_dict(r.thing_stuff)
        for r in records
        if r.status == "done" and r.thing_stuff is not None
    ]
    fixed = fixed_split(cfg)
    if fixed is not None:
        out: dict[str, Any] = {"thing_stuff": ThingStuffStats.sum(parts).to_dict()} if parts else {}
        return {**out, "thing_classes": list(fixed[0]), "stuff_classes": list(fixed[1])}
    if not parts and not semantics_enabled(cfg):
        return {}
    total = ThingStuffStats.sum(parts, num_classes=int(cfg.semantics.num_classes))
    things, stuff = thing_stuff_split(total, float(cfg.thing_stuff_threshold))
    return {
        "thing_stuff": total.to_dict(),
        "thing_classes": list(things),
        "stuff_classes": list(stuff),
    }


def write_manifest(
    store: Path,
    cfg: Any,
    *,
    backends: Mapping[str, str] | None = None,
    expected_clips: Sequence[str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """(Re)build ``STORE/manifest.json`` atomically under the store's lock (see
    :func:`build_manifest`); call it at the end of every process. Returns the manifest."""
    store = Path(store)
    status_dir = store / STATUS_DIR
    status_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(status_dir / LOCK_FILE):
        # Under the lock nobody else writes the manifest: any temporary file is a killed run's.
        remove_temp_files(store, temp_name_prefix(store / MANIFEST))
        manifest = build_manifest(
            store, cfg, backends=backends, expected_clips=expected_clips, extra=extra
        )
        atomic_write_json(store / MANIFEST, manifest)
    return manifest


class StoreWriter:
    """Writes one process's share of a store (see the module docstring for the rules).

    Args:
        root: the store folder (created with its parents if missing).
        cfg: the config the labels are made with (a dataclass; its hash tags every record).
        overwrite: accept a store made under another config and remove that config's clips.

    Raises:
        ValueError: ``root`` cannot be created or written (the message names it and why).
        StoreConfigError: the store holds clips or a manifest of another config and
            ``overwrite`` is False.
    """

    def __init__(self, root: Path, cfg: Any, *, overwrite: bool = False) -> None:
        self.root = Path(root)
        self.cfg = cfg
        self.config_hash = config_hash(cfg)
        self.status_dir = self.root / STATUS_DIR
        try:
            self.status_dir.mkdir(parents=True, exist_ok=True)
            with file_lock(self.status_dir / LOCK_FILE):
                self._check_config(overwrite)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise ValueError(f"{self.root}: cannot create or write the store ({reason})") from None

    def _check_config(self, overwrite: bool) -> None:
        others = {
            n: r for n, r in read_records(self.root).items() if r.config_hash != self.config_hash
        }
        manifest_hash = None
        with contextlib.suppress(FileNotFoundError, ValueError):
            manifest_hash = read_manifest(self.root).get("config_hash")
        stale_manifest = manifest_hash is not None and manifest_hash != self.config_hash
        if not others and not stale_manifest:
            return
        if not overwrite:
            raise StoreConfigError(
                f"{self.root}: the store was made with another config (hash "
                f"{(manifest_hash or next(iter(others.values())).config_hash)[:12]}, this one "
                f"{self.config_hash[:12]}); use --overwrite to replace it, or another --out"
            )
        for name in others:
            self._remove_clip(name)
        if stale_manifest:
            (self.root / MANIFEST).unlink(missing_ok=True)

    # --- paths

    def clip_dir(self, clip: str) -> Path:
        """``STORE/<clip>`` (the name is checked with :func:`check_name`)."""
        return self.root / check_name(clip)

    def record_path(self, clip: str) -> Path:
        return self.status_dir / f"{check_name(clip)}.json"

    def instance_path(self, clip: str, stem: str) -> Path:
        """``STORE/<clip>/instance/<stem>.png``."""
        return self.clip_dir(clip) / INSTANCE_DIR / f"{check_name(stem, 'frame stem')}{PNG}"

    def semantic_path(self, clip: str, stem: str) -> Path:
        """``STORE/<clip>/semantic/<stem>.png``."""
        return self.clip_dir(clip) / SEMANTIC_DIR / f"{check_name(stem, 'frame stem')}{PNG}"

    def scratch_dir(self, clip: str) -> Path:
        """``STORE/.tmp/<clip>``: the semantic stage's per-frame raw maps while the clip runs."""
        return self.root / TMP_DIR / check_name(clip)

    # --- state

    def record(self, clip: str) -> ClipRecord | None:
        """The clip's status record, or None if it has none (or an unreadable one)."""
        path = self.record_path(clip)
        try:
            return ClipRecord.from_json(_read_json(path))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("%s: ignored (%s)", path, exc)
            return None

    def is_finished(self, clip: str) -> bool:
        """True if the clip is done under this config with one instance PNG per frame (and, with
        the semantic stage on, one semantic PNG per frame and its thing/stuff statistic; with a
        fixed split, one semantic PNG per frame)."""
        record = self.record(clip)
        if record is None or record.status != "done" or record.config_hash != self.config_hash:
            return False
        folders = [INSTANCE_DIR]
        if semantics_enabled(self.cfg):
            if record.thing_stuff is None:
                return False
            folders.append(SEMANTIC_DIR)
        elif fixed_split(self.cfg) is not None:
            folders.append(SEMANTIC_DIR)
        expected = {f"{s}{PNG}" for s in record.stems}
        for sub in folders:
            try:
                names = {
                    n
                    for n in os.listdir(self.clip_dir(clip) / sub)
                    if n.endswith(PNG) and not n.startswith(".")
                }
            except FileNotFoundError:
                return False
            if names != expected:
                return False
        return True

    # --- writing

    def _remove_clip(self, clip: str) -> None:
        record = self.record_path(clip)
        record.unlink(missing_ok=True)  # first: a crash below leaves no "done" record
        remove_temp_files(self.status_dir, temp_name_prefix(record))
        for folder in (self.clip_dir(clip), self.scratch_dir(clip)):
            if folder.is_dir():
                shutil.rmtree(folder)
            elif folder.exists():
                folder.unlink()

    def remove_scratch(self, clip: str) -> None:
        """Remove ``STORE/.tmp/<clip>`` (and ``STORE/.tmp`` once empty)."""
        folder = self.scratch_dir(clip)
        if folder.is_dir():
            shutil.rmtree(folder)
        with contextlib.suppress(OSError):
            folder.parent.rmdir()

    def begin_clip(self, clip: str, *, semantic: bool = False) -> None:
        """Start (or restart) a clip: remove its record and every file of it, create its
        ``instance/`` folder (and with ``semantic`` its ``semantic/`` folder and its scratch
        folder ``STORE/.tmp/<clip>``)."""
        self._remove_clip(clip)
        (self.clip_dir(clip) / INSTANCE_DIR).mkdir(parents=True)
        if semantic:
            (self.clip_dir(clip) / SEMANTIC_DIR).mkdir()
            self.scratch_dir(clip).mkdir(parents=True)

    def write_instance(self, clip: str, stem: str, labels: npt.NDArray[np.uint16]) -> Path:
        """Write one frame's track-id map atomically; returns its path.

        Args:
            labels: ``uint16[H, W]`` track ids, 0 = no instance.

        Raises:
            ValueError: ``labels`` is not ``uint16[H, W]``, or a bad stem.
        """
        return _write_map(self.instance_path(clip, stem), labels, np.uint16, "instance", clip, stem)

    def write_semantic(self, clip: str, stem: str, labels: npt.NDArray[np.uint8]) -> Path:
        """Write one frame's (aligned) pseudo-class map atomically; returns its path.

        Args:
            labels: ``uint8[H, W]`` pseudo-classes, 255 = void.

        Raises:
            ValueError: ``labels`` is not ``uint8[H, W]``, or a bad stem.
        """
        return _write_map(self.semantic_path(clip, stem), labels, np.uint8, "semantic", clip, stem)

    def finish_clip(self, record: ClipRecord) -> None:
        """Write the clip's status record atomically (the last step of a clip)."""
        atomic_write_json(self.record_path(record.clip), record.to_json())

    def record_clip(
        self,
        clip: str,
        status: ClipStatus,
        stems: Sequence[str],
        *,
        error: str | None,
        seconds: float,
        size: tuple[int, int] | None,
        backends: Mapping[str, str],
        source: dict[str, Any],
        thing_stuff: dict[str, Any] | None = None,
    ) -> ClipRecord:
        """Build the clip's :class:`ClipRecord` under this store's config and write it
        (:meth:`finish_clip`); returns it."""
        record = ClipRecord(
            clip=clip,
            status=status,
            stems=tuple(stems),
            error=error,
            seconds=seconds,
            height=None if size is None else size[0],
            width=None if size is None else size[1],
            config_hash=self.config_hash,
            backends=dict(backends),
            source=source,
            thing_stuff=thing_stuff,
        )
        self.finish_clip(record)
        return record

    def write_manifest(
        self,
        *,
        backends: Mapping[str, str] | None = None,
        expected_clips: Sequence[str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """:func:`write_manifest` of this store and config."""
        return write_manifest(
            self.root, self.cfg, backends=backends, expected_clips=expected_clips, extra=extra
        )


# --------------------------------------------------------------------------------------------------
# Reading


def _read_png(path: Path, dtype: type[np.generic]) -> npt.NDArray[Any]:
    array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise FileNotFoundError(f"{path}: missing or not a readable PNG")
    if array.dtype != dtype or array.ndim != 2:
        raise ValueError(
            f"{path}: expected {np.dtype(dtype).name}[H, W], got {array.dtype}{list(array.shape)}"
        )
    return array


@dataclasses.dataclass(frozen=True)
class StoreClip:
    """One finished clip of a store: its frames' label files and where its images are.

    Attributes:
        name: clip name.
        stems: frame stems in clip order.
        instance_paths: ``STORE/<clip>/instance/<stem>.png`` per frame.
        semantic_paths: ``STORE/<clip>/semantic/<stem>.png`` per frame, or None if the store has
            no (complete) semantic labels for the clip.
        source: how to find the clip's frames again (see
            :func:`vcups_core.pseudo.sources.reopen_clip`).
        height, width: label size.
        status: the clip's status (``"done"`` unless failed clips were asked for).
        error: the reason when not done.
        thing_classes, stuff_classes: the store's thing/stuff split (manifest), or None
            without the semantic stage.
    """

    name: str
    stems: tuple[str, ...]
    instance_paths: tuple[Path, ...]
    semantic_paths: tuple[Path, ...] | None
    source: dict[str, Any]
    height: int | None
    width: int | None
    status: ClipStatus = "done"
    error: str | None = None
    thing_classes: tuple[int, ...] | None = None
    stuff_classes: tuple[int, ...] | None = None

    def __len__(self) -> int:
        return len(self.stems)

    def instance(self, i: int) -> npt.NDArray[np.uint16]:
        """Track ids of frame ``i``: ``uint16[H, W]``, 0 = no instance.

        Raises:
            FileNotFoundError, ValueError: the file is missing or not a 16-bit single-channel PNG.
        """
        return _read_png(self.instance_paths[i], np.uint16)

    def semantic(self, i: int) -> npt.NDArray[np.uint8] | None:
        """Pseudo-classes of frame ``i``: ``uint8[H, W]``, 255 = void; None without them."""
        if self.semantic_paths is None:
            return None
        return _read_png(self.semantic_paths[i], np.uint8)

    def targets(self, i: int, *, ignore_unknown_thing_regions: bool = False) -> TrainingTargets:
        """Frame ``i``'s training targets: :func:`~vcups_core.pseudo.compose.training_targets`
        of its semantic and instance maps with the store's thing/stuff classes.

        Raises:
            ValueError: the store has no semantic labels (made without ``semantics.weights``).
            FileNotFoundError: a label file is missing.
        """
        from vcups_core.pseudo.compose import training_targets

        semantic = self.semantic(i)
        if semantic is None or self.thing_classes is None or self.stuff_classes is None:
            raise ValueError(
                f"clip {self.name!r}: the store has no semantic pseudo-labels (run vcups "
                "pseudo-labels with semantics.weights set)"
            )
        return training_targets(
            semantic,
            self.instance(i),
            self.thing_classes,
            self.stuff_classes,
            ignore_unknown_thing_regions=ignore_unknown_thing_regions,
        )

    def frames(self) -> Iterator[tuple[str, VideoFrame]]:
        """The clip's input frames again, resized to the label size like the pipeline did:
        ``(stem, frame)`` with ``frame.image`` ``uint8[height, width, 3]`` and ``index`` the
        position in the clip.

        Raises:
            FileNotFoundError, ValueError: the source is gone or no longer matches the labels.
        """
        from vcups_core.pseudo.sources import reopen_clip, resize_image

        clip = reopen_clip(self.source)
        stream = clip.frames()
        for index, expected in enumerate(self.stems):
            try:
                stem, frame = next(stream)
            except StopIteration:
                raise ValueError(
                    f"clip {self.name!r}: the source ended before frame {expected!r}"
                ) from None
            if stem != expected:
                raise ValueError(
                    f"clip {self.name!r}: frame {index} of the source is {stem!r}, the store has "
                    f"{expected!r}"
                )
            size = (self.height, self.width)
            image = frame.image
            if size[0] is not None and size[1] is not None:
                image = resize_image(image, (size[0], size[1]))
            yield stem, VideoFrame(image, frame.stamp_ns, frame.frame_id, index)


def read_store(store: Path, *, include_failed: bool = False) -> list[StoreClip]:
    """The clips of a store, by name, from its manifest.

    Args:
        store: the store folder.
        include_failed: also list failed and interrupted clips (their label files may be
            incomplete; ``instance_paths`` lists the frames that have one).

    Raises:
        FileNotFoundError: no manifest, or a done clip misses a label file (the store is
            damaged: re-run ``vcups pseudo-labels``).
        ValueError: the manifest is not a pseudo-label manifest.
    """
    store = Path(store)
    manifest = read_manifest(store)
    things = manifest.get("thing_classes")
    stuff = manifest.get("stuff_classes")
    thing_classes = None if things is None else tuple(int(c) for c in things)
    stuff_classes = None if stuff is None else tuple(int(c) for c in stuff)
    out: list[StoreClip] = []
    for name, entry in sorted(dict(manifest.get("clips", {})).items()):
        status = entry.get("status")
        if status != "done" and not include_failed:
            continue
        stems = tuple(str(s) for s in entry.get("stems", []))
        folder = store / check_name(name)
        instance = tuple(folder / INSTANCE_DIR / f"{s}{PNG}" for s in stems)
        if status == "done":
            missing = [p for p in instance if not p.is_file()]
            if missing:
                raise FileNotFoundError(
                    f"{missing[0]}: missing although clip {name!r} is done ({len(missing)} "
                    f"files missing); re-run vcups pseudo-labels on {store}"
                )
        else:
            instance = tuple(p for p in instance if p.is_file())
        semantic_paths: tuple[Path, ...] | None = tuple(
            folder / SEMANTIC_DIR / f"{s}{PNG}" for s in stems
        )
        if semantic_paths and not all(p.is_file() for p in semantic_paths):
            semantic_paths = None
        out.append(
            StoreClip(
                name=name,
                stems=stems,
                instance_paths=instance,
                semantic_paths=semantic_paths or None,
                source=dict(entry.get("source", {})),
                height=entry.get("height"),
                width=entry.get("width"),
                status=status,
                error=entry.get("error"),
                thing_classes=thing_classes,
                stuff_classes=stuff_classes,
            )
        )
    return out


def list_temp_files(store: Path) -> list[Path]:
    """Temporary files of killed writers anywhere in the store (for checks and clean-up)."""
    return sorted(p for p in Path(store).rglob("*") if is_temp_file(p.name) and p.is_file())


def _write_map(
    path: Path, labels: npt.NDArray[Any], dtype: type, what: str, clip: str, stem: str
) -> Path:
    """Check that ``labels`` is ``dtype[H, W]`` and write it to ``path`` atomically as a PNG."""
    labels = np.asarray(labels)
    if labels.dtype != dtype or labels.ndim != 2:
        raise ValueError(
            f"clip {clip!r} frame {stem!r}: {what} labels must be {np.dtype(dtype).name}[H, W], "
            f"got {labels.dtype}{list(labels.shape)}"
        )
    atomic_write_png(path, labels)
    return path
