"""``vcups evaluate (--checkpoint C | --oracle) --dataset NAME:ROOT --out DIR``: the oracle scores
1.0 in every written format and its predictions read back as the ground truth; shards, torchrun
and a resumed run give the unsharded report; a tiny checkpoint runs end to end; a split without
labels is exported (not scored) with the class mapping of a labelled split's run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from training.cli import main
from vcups_core.data import cityscapes_classes as cs
from vcups_core.data.cityscapes_vps import write_cityscapes_vps
from vcups_core.data.clip import LabeledClip, PanopticLabel
from vcups_core.data.kitti_step import write_kitti_step
from vcups_core.data.mots import write_mots
from vcups_core.data.registry import open_dataset
from vcups_core.data.synthetic import SyntheticWorld
from vcups_core.data.waymo import write_waymo

REPO = Path(__file__).resolve().parents[2]
H, W = 32, 64
# Worlds in which the tracker keeps every id right at this tiny size (in some others a new
# object enters where one just left and inherits its id: AQ < 1 even with the oracle).
SEEDS = (0, 1)


def clip(seed: int, frames: int, every: int, name: str) -> LabeledClip:
    """A synthetic clip with labels on frames every-1, 2*every-1, ..."""
    world = SyntheticWorld(height=H, width=W, num_frames=frames, seed=seed)
    images, labels = [], []
    for f in world.frames():
        images.append(f.rgb)
        labelled = (f.index + 1) % every == 0
        labels.append(PanopticLabel(f.semantic, f.instance) if labelled else None)
    return LabeledClip(name, tuple(images), tuple(labels))


def as_mots(c: LabeledClip) -> LabeledClip:
    """Persons as MOTS class 1 with their instance, everything else background."""
    labels = []
    for label in c.labels:
        assert label is not None
        person = label.semantic == cs.PERSON
        labels.append(
            PanopticLabel(
                person.astype(np.uint8), np.where(person, label.instance, 0).astype(np.int32)
            )
        )
    return LabeledClip(c.name, c.images, tuple(labels))


def write_dataset(name: str, root: Path) -> None:
    if name == "kitti-step":
        write_kitti_step([clip(s, 6, 1, str(s + 1)) for s in SEEDS], root)
    elif name == "cityscapes-vps":  # the whole snippet in img_all, labels on every 5th frame
        write_cityscapes_vps([clip(s, 20, 5, str(s + 1)) for s in SEEDS], root)
    elif name == "waymo":  # frame 2 of each scene unlabelled, frames numbered 0, 2, 4, ...
        clips = []
        for s in SEEDS:
            c = clip(s, 6, 1, f"scene_{s}")
            clips.append(LabeledClip(c.name, c.images, (*c.labels[:2], None, *c.labels[3:])))
        write_waymo(clips, root, frame_numbers={c.name: range(0, 12, 2) for c in clips})
    else:  # MOTSChallenge numbering: images and time_frame from 1
        clips = [as_mots(clip(s, 6, 1, f"000{s + 2}")) for s in SEEDS]
        assert any((label.semantic == 1).any() for c in clips for label in c.labels if label)
        write_mots(clips, root, frame_numbers={c.name: range(1, 7) for c in clips})


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """The root of a 2-clip synthetic dataset in a given format (written once)."""
    base = tmp_path_factory.mktemp("datasets")
    roots: dict[str, Path] = {}

    def root(name: str) -> Path:
        if name not in roots:
            write_dataset(name, base / name)
            roots[name] = base / name
        return roots[name]

    return root


def run(dataset: str, root: Path, out: Path, *extra: str) -> int:
    argv = ["evaluate", "--oracle", "--dataset", f"{dataset}:{root}", "--out", str(out)]
    return main([*argv, "--quiet", *extra])


def report(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / "report.json").read_text())
    return data


@pytest.fixture(scope="module")
def kitti_reference(data: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An unsharded oracle run on KITTI-STEP (the reference of the shard and resume tests)."""
    out = tmp_path_factory.mktemp("reference") / "run"
    assert run("kitti-step", data("kitti-step"), out) == 0
    return out


def assert_same_panoptic(gt_root: Path, pred_root: Path, dataset: str) -> None:
    """Same clips, frames and annotated frames; equal classes; instance ids equal up to one
    renaming per clip (one predicted track per ground-truth track and back)."""
    gt = {c.name: c for c in open_dataset(dataset, gt_root)}
    pred = {c.name: c for c in open_dataset(dataset, pred_root)}
    assert sorted(pred) == sorted(gt)
    tracks = 0
    for name, g in gt.items():
        p = pred[name]
        assert len(p) == len(g)
        assert [f.index for f in p.annotated] == [f.index for f in g.annotated]
        pairs: set[tuple[int, int]] = set()
        for gf, pf in zip(g.annotated, p.annotated, strict=True):
            gl, pl = gf.label(), pf.label()
            assert gl is not None and pl is not None
            np.testing.assert_array_equal(pl.semantic, gl.semantic)
            np.testing.assert_array_equal(pl.instance > 0, gl.instance > 0)
            on = gl.instance > 0
            pairs |= set(zip(gl.instance[on].tolist(), pl.instance[on].tolist(), strict=True))
        assert len({a for a, _ in pairs}) == len(pairs) == len({b for _, b in pairs})
        tracks += len(pairs)
    assert tracks > 0


@pytest.mark.parametrize("dataset", ["kitti-step", "cityscapes-vps", "waymo", "mots"])
def test_the_oracle_scores_one_and_its_predictions_read_back_as_the_ground_truth(
    dataset: str, data: Callable[[str], Path], tmp_path: Path
) -> None:
    root, out = data(dataset), tmp_path / "run"
    # Waymo's rule makes ground-truth tracks under 400 px (all of them at 32x64) crowd
    config = tmp_path / "evaluation.yaml"
    config.write_text("waymo_min_track_area: 0\n")
    assert run(dataset, root, out, "--config", str(config)) == 0
    r = report(out)
    for key in ("STQ", "AQ", "SQ", "VPQ"):
        assert r[key] == pytest.approx(1.0), key
    annotated = sum(len(c.annotated) for c in open_dataset(dataset, root))
    assert (r["dataset"], r["sequences"], r["frames"], r["clips"]) == (dataset, 2, annotated, 2)
    assert r["predictor"] == "oracle" and r["predictions"] == "predictions"
    assert all((out / p).stat().st_size > 0 for p in r["plots"])
    # the written files carry dataset class ids: they read back as the ground truth ...
    assert_same_panoptic(root, out / "predictions", dataset)
    # ... and scoring them as stored predictions gives the run's scores
    stored = tmp_path / "stored.json"
    args = ["evaluate", "--dataset", dataset, "--gt", str(root), "--pred", str(out / "predictions")]
    args += ["--config", str(config), "--match", "none"]
    assert main([*args, "--out", str(stored), "--quiet"]) == 0
    assert json.loads(stored.read_text())["STQ"] == pytest.approx(1.0)


def test_streamed_frames_and_category_mapping(data: Callable[[str], Path], tmp_path: Path) -> None:
    # the oracle streams only the labelled frames (it knows no others): 4 of 20 per snippet
    assert run("cityscapes-vps", data("cityscapes-vps"), tmp_path) == 0
    r = report(tmp_path)
    assert r["frames_streamed"] == 8
    assert r["category_mapping"]["car"] == "car" and r["category_mapping"]["sky"] == "sky"
    assert json.loads((tmp_path / "run.json").read_text())["split"] == "val"


def test_sharded_runs_give_the_unsharded_report(
    data: Callable[[str], Path],
    kitti_reference: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = data("kitti-step")
    assert run("kitti-step", root, tmp_path, "--shard", "1/2") == 0
    assert "1 of 2 clips finished" in capsys.readouterr().out
    assert not (tmp_path / "report.json").exists() and not (tmp_path / "predictions").exists()
    assert run("kitti-step", root, tmp_path, "--shard", "0/2") == 0
    assert report(tmp_path) == report(kitti_reference)
    files = sorted(p.relative_to(tmp_path) for p in (tmp_path / "predictions").rglob("*.png"))
    assert files == sorted(
        p.relative_to(kitti_reference) for p in (kitti_reference / "predictions").rglob("*.png")
    )
    files += [Path("clips/0001.npz"), Path("clips/0002.npz")]
    for rel in files:
        assert (tmp_path / rel).read_bytes() == (kitti_reference / rel).read_bytes()


def test_a_killed_run_resumes_with_the_unfinished_clips(
    data: Callable[[str], Path],
    kitti_reference: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from vcups_core.streaming import dataset_run

    real = dataset_run.stream_clip
    streamed: list[str] = []

    def interrupted_at_second_clip(c: Any, *args: Any, **kwargs: Any) -> Any:
        if streamed:
            raise KeyboardInterrupt
        streamed.append(c.name)
        return real(c, *args, **kwargs)

    monkeypatch.setattr(dataset_run, "stream_clip", interrupted_at_second_clip)
    root = data("kitti-step")
    assert run("kitti-step", root, tmp_path) == 130
    assert (tmp_path / "clips" / "0001.npz").is_file()
    assert not (tmp_path / "clips" / "0002.npz").exists()
    assert not (tmp_path / "report.json").exists()
    leftover = tmp_path / "clips" / ".0002.npz.999999999.0badcafe.tmp"  # a dead writer's
    leftover.write_bytes(b"cut")

    def counted(c: Any, *args: Any, **kwargs: Any) -> Any:
        streamed.append(c.name)
        return real(c, *args, **kwargs)

    monkeypatch.setattr(dataset_run, "stream_clip", counted)
    assert run("kitti-step", root, tmp_path) == 0
    assert streamed == ["0001", "0002"]  # clip 0001 was not streamed again
    assert not leftover.exists()
    assert report(tmp_path) == report(kitti_reference)


def test_a_folder_of_another_run_is_refused(
    data: Callable[[str], Path], kitti_reference: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("mots", data("mots"), kitti_reference) == 2
    err = capsys.readouterr().err
    assert "holds results of a run with another dataset, root, split" in err
    assert report(kitti_reference)["STQ"] == pytest.approx(1.0)  # untouched


def test_torchrun_ranks_share_the_clips_and_rank_0_reports(
    data: Callable[[str], Path], kitti_reference: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ddp"
    root = data("kitti-step")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    cmd += ["-m", "training.cli", "evaluate", "--oracle", "--dataset", f"kitti-step:{root}"]
    cmd += ["--out", str(out), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "(shard 0/2)" in done.stdout and "(shard 1/2)" in done.stdout
    assert done.stdout.count("STQ 100.0") == 1  # rank 0 alone reports
    assert report(out) == report(kitti_reference)


@pytest.mark.parametrize("dataset", ["kitti-step", "cityscapes-vps", "waymo", "mots"])
def test_stored_predictions_need_no_images(
    dataset: str, data: Callable[[str], Path], tmp_path: Path
) -> None:
    """A prediction folder with labels only (as other tools write them) is scored: the ground
    truth's images are linked in, never its labels, and nothing is written to either root."""
    import shutil

    root, out = data(dataset), tmp_path / "run"
    config = tmp_path / "evaluation.yaml"
    config.write_text("waymo_min_track_area: 0\n")
    assert run(dataset, root, out, "--config", str(config)) == 0
    labels_only = tmp_path / "labels_only"
    shutil.copytree(out / "predictions", labels_only)
    images = [
        p
        for p in labels_only.rglob("*")
        if p.name.endswith("_image.png") or p.name in ("images", "img", "img_all")
    ]
    assert images
    for p in images:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    before = sorted(p.relative_to(labels_only) for p in labels_only.rglob("*"))
    report_path = tmp_path / "stored.json"
    args = ["evaluate", "--dataset", dataset, "--gt", str(root), "--pred", str(labels_only)]
    args += ["--config", str(config), "--match", "none", "--out", str(report_path), "--quiet"]
    assert main(args) == 0
    assert json.loads(report_path.read_text())["STQ"] == pytest.approx(1.0)
    assert sorted(p.relative_to(labels_only) for p in labels_only.rglob("*")) == before


def test_a_tiny_checkpoint_runs_end_to_end(tmp_path: Path) -> None:
    import torch

    from vcups_core.config import apply_overrides, load_config
    from vcups_core.configs.model import ModelConfig
    from vcups_core.model.build import build_model
    from vcups_core.model.checkpoint import save_checkpoint

    root = tmp_path / "kitti"
    write_kitti_step([clip(s, 2, 1, str(s + 1)) for s in SEEDS], root)
    torch.manual_seed(0)
    cfg = load_config(REPO / "config" / "model" / "tiny.yaml", ModelConfig)
    cfg = apply_overrides(cfg, ["min_size=32", "max_size=64"], ModelConfig)
    checkpoint = save_checkpoint(build_model(cfg).eval(), tmp_path / "tiny.pt")
    out = tmp_path / "run"
    argv = ["evaluate", "--checkpoint", str(checkpoint), "--dataset", f"kitti-step:{root}"]
    assert main([*argv, "--out", str(out), "--quiet"]) == 0
    r = report(out)
    assert (r["frames"], r["sequences"], r["frames_streamed"]) == (4, 2, 4)
    assert all(0.0 <= r[k] <= 1.0 for k in ("STQ", "AQ", "SQ", "VPQ"))
    assert r["predictor"]["checkpoint"] == str(checkpoint.resolve())
    assert set(r["category_mapping"]) == {f"thing_{i}" for i in range(5)} | {
        f"stuff_{j}" for j in range(22)
    }
    # the files hold dataset class ids (train ids or void), not the model's 27 categories
    pred = list(open_dataset("kitti-step", out / "predictions"))
    assert [c.name for c in pred] == ["0001", "0002"]
    for c in pred:
        for f in c.annotated:
            label = f.label()
            assert label is not None and label.shape == (H, W)
            assert set(np.unique(label.semantic).tolist()) <= set(range(19)) | {255}
    stored = tmp_path / "stored.json"
    args = ["evaluate", "--dataset", "kitti-step", "--gt", str(root)]
    args += ["--pred", str(out / "predictions"), "--match", "none"]
    assert main([*args, "--out", str(stored), "--quiet"]) == 0
    again = json.loads(stored.read_text())
    for key in ("STQ", "AQ", "SQ", "VPQ"):
        assert again[key] == pytest.approx(r[key]), key


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--dataset", "kitti-step"], "expected NAME:ROOT with --checkpoint/--oracle"),
        (["--dataset", "davis:/x"], "expected one of cityscapes-vps, kitti-step, mots, waymo"),
        (["--dataset", "kitti-step:ROOT", "--gt", "g"], "--gt/--pred score stored predictions"),
        (["--dataset", "kitti-step:ROOT", "--shard", "2/2"], "--shard '2/2': expected I/N"),
    ],
)
def test_usage_errors_are_one_line(
    extra: list[str],
    message: str,
    data: Callable[[str], Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    extra = [e.replace("ROOT", str(data("kitti-step"))) for e in extra]
    assert main(["evaluate", "--oracle", "--out", str(tmp_path / "o"), "--quiet", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_the_stored_form_refuses_run_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", "--dataset", "kitti-step", "--shard", "0/2", "--out", "x"]) == 2
    assert "--shard needs --checkpoint or --oracle" in capsys.readouterr().err
    args = ["evaluate", "--dataset", "kitti-step", "--class-mapping", "r.json", "--out", "x"]
    assert main(args) == 2
    assert "--class-mapping needs --checkpoint or --oracle" in capsys.readouterr().err
    assert main(["evaluate", "--dataset", "kitti-step", "--out", str(tmp_path / "r.json")]) == 2
    assert "give --checkpoint C or --oracle" in capsys.readouterr().err
    args = ["evaluate", "--dataset", "davis", "--gt", "g", "--pred", "p", "--out", "r.json"]
    assert main(args) == 2
    assert "--dataset davis: expected one of cityscapes-vps" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny model (27 categories) sized for the 32x64 synthetic frames."""
    import torch

    from vcups_core.config import apply_overrides, load_config
    from vcups_core.configs.model import ModelConfig
    from vcups_core.model.build import build_model
    from vcups_core.model.checkpoint import save_checkpoint

    torch.manual_seed(0)
    cfg = load_config(REPO / "config" / "model" / "tiny.yaml", ModelConfig)
    cfg = apply_overrides(cfg, ["min_size=32", "max_size=64"], ModelConfig)
    path = tmp_path_factory.mktemp("tiny") / "tiny.pt"
    return Path(save_checkpoint(build_model(cfg).eval(), path))


def write_val_and_test(dataset: str, root: Path) -> None:
    """A labelled ``val`` split and a ``test`` split of the same 2 clips without labels, in the
    released layout (Cityscapes-VPS: the frames listed in ``panoptic_im_test_city_vps.json``)."""
    if dataset == "kitti-step":
        clips = [clip(s, 2, 1, str(s + 1)) for s in SEEDS]
        write_kitti_step(clips, root, "val")
        unlabelled = [LabeledClip(c.name, c.images, (None,) * len(c.images)) for c in clips]
        write_kitti_step(unlabelled, root, "test")
        return
    clips = [clip(s, 10, 5, str(s + 1)) for s in SEEDS]
    write_cityscapes_vps(clips, root, "val")
    write_cityscapes_vps(clips, root, "test")
    listing = json.loads((root / "panoptic_gt_test_city_vps.json").read_text())
    del listing["annotations"]
    (root / "panoptic_im_test_city_vps.json").write_text(json.dumps(listing))
    (root / "panoptic_gt_test_city_vps.json").unlink()
    for label in (root / "test" / "panoptic_video").iterdir():
        label.unlink()


@pytest.mark.parametrize("dataset", ["kitti-step", "cityscapes-vps"])
def test_a_split_without_labels_is_exported_with_a_val_runs_mapping(
    dataset: str, tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "data"
    write_val_and_test(dataset, root)
    assert not any(c.annotated for c in open_dataset(dataset, root, "test"))
    base = ["evaluate", "--checkpoint", str(tiny_checkpoint), "--dataset", f"{dataset}:{root}"]
    val, test = tmp_path / "val", tmp_path / "test"
    assert main([*base, "--out", str(val), "--quiet"]) == 0
    capsys.readouterr()
    # no ground truth to match on: refused before anything runs, saying what to give
    assert main([*base, "--split", "test", "--out", str(test), "--quiet"]) == 2
    assert "no labels to match the pseudo-classes on: give --class-mapping" in (
        capsys.readouterr().err
    )
    assert not (test / "clips").exists()
    mapping = ["--class-mapping", str(val / "report.json")]
    assert main([*base, "--split", "test", *mapping, "--out", str(test), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"{dataset} split test has no labels: nothing scored" in out
    assert not (test / "report.json").exists()
    # every frame a submission needs (KITTI-STEP: all 4; Cityscapes-VPS: the 2 listed of each
    # snippet, under the listing's image ids) ...
    gt = {c.name: c for c in open_dataset(dataset, root, "test")}
    pred = list(open_dataset(dataset, test / "predictions", "test"))
    assert sorted(c.name for c in pred) == sorted(gt)
    expected = {"kitti-step": [0, 1], "cityscapes-vps": [4, 9]}[dataset]
    assert f"predictions of {2 * len(expected)} frames of 2 clips" in out
    for c in pred:
        assert [f.index for f in c.annotated] == expected
        assert [f.image_id for f in c.annotated] == [
            gt[c.name].frames[i].image_id for i in expected
        ]
    # ... with the val run's classes: the test frames are the val frames, so the labels are the
    # val run's predictions, label for label
    val_pred = {c.name: c for c in open_dataset(dataset, val / "predictions", "val")}
    for c in pred:
        for f in c.annotated:
            got, want = f.label(), val_pred[c.name].frames[f.index].label()
            assert got is not None and want is not None
            np.testing.assert_array_equal(got.semantic, want.semantic)
            np.testing.assert_array_equal(got.instance, want.instance)


def test_the_oracle_cannot_run_on_a_split_without_labels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "data"
    write_val_and_test("kitti-step", root)
    assert run("kitti-step", root, tmp_path / "o", "--split", "test") == 2
    assert "--oracle: " in capsys.readouterr().err


def test_a_class_mapping_comes_from_a_report_of_the_same_checkpoint(tmp_path: Path) -> None:
    from training.evaluate import load_class_mapping
    from vcups_core.data.datasets import KITTI_STEP
    from vcups_core.types import CategoryTable

    categories = CategoryTable(("thing_0", "stuff_0", "stuff_1"), 1, (0, 1, 2))
    ours = {"checkpoint": "/elsewhere/c.pt", "sha256": "ab"}
    report = tmp_path / "report.json"

    def write(mapping: dict[str, str], sha: str = "ab") -> None:
        predictor = {"checkpoint": "/x/c.pt", "sha256": sha}
        report.write_text(json.dumps({"class_mapping": mapping, "predictor": predictor}))

    write({"0": "car", "1": "void", "2": "road"})
    match = load_class_mapping(report, KITTI_STEP, categories, ours)
    assert match.mapping.tolist() == [cs.CAR, 255, cs.ROAD]
    assert match.apply(np.array([[0, 1, 2, 255]], np.uint8)).tolist() == [[13, 255, 0, 255]]
    write({"0": "car", "1": "void", "2": "road"}, sha="cd")
    with pytest.raises(ValueError, match="the mapping of another predictor"):
        load_class_mapping(report, KITTI_STEP, categories, ours)
    write({"0": "car", "1": "road"})
    with pytest.raises(ValueError, match="maps 2 categories, the model has 3"):
        load_class_mapping(report, KITTI_STEP, categories, ours)
    write({"0": "person ", "1": "road", "2": "road"})
    with pytest.raises(ValueError, match=r"\['person '\] are not kitti-step classes"):
        load_class_mapping(report, KITTI_STEP, categories, ours)
    report.write_text("{}")
    with pytest.raises(ValueError, match="has no class_mapping"):
        load_class_mapping(report, KITTI_STEP, categories, ours)
