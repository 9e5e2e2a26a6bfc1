"""No traceback for a user's mistake (issue 16): each bad input below ends with a non-zero exit
status and a short message on stderr naming the argument, file or value, never a traceback.

Most cases call :func:`training.cli.main` in-process (fast; an exception escaping it fails the
test); a few run the ``vcups`` console script in a subprocess, exactly as a user does.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO

from training.cli import main

VCUPS = shutil.which("vcups", path=str(Path(sys.executable).parent))
TOPIC = "/camera/image_raw"
GT = "/gt/semantic,/gt/instance"


@dataclass(frozen=True)
class Case:
    """``argv`` with ``{name}`` placeholders for the paths of :func:`paths`; ``expect``: pieces
    of the message on stderr (placeholders allowed)."""

    argv: tuple[str, ...]
    expect: tuple[str, ...]


def case(id_: str, argv: str, *expect: str) -> object:
    return pytest.param(Case(tuple(argv.split()), expect), id=id_)


# --------------------------------------------------------------------------------------------
# inputs


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The files every case reads: a tiny checkpoint and damaged ones, a bag, a dataset, bad
    ONNX/engine files and bad configs (written once)."""
    import torch

    from vcups_core.config import apply_overrides, load_config
    from vcups_core.configs.model import ModelConfig
    from vcups_core.data.clip import LabeledClip, PanopticLabel
    from vcups_core.data.kitti_step import write_kitti_step
    from vcups_core.data.rosbag import write_synthetic_bag
    from vcups_core.data.synthetic import SyntheticWorld
    from vcups_core.model.build import build_model
    from vcups_core.model.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("inputs")
    torch.manual_seed(0)
    cfg = load_config(REPO / "config" / "model" / "tiny.yaml", ModelConfig)
    cfg = apply_overrides(cfg, ["min_size=32", "max_size=64"], ModelConfig)
    ckpt = save_checkpoint(build_model(cfg).eval(), root / "tiny.pt")
    data = ckpt.read_bytes()
    (root / "half.pt").write_bytes(data[: len(data) // 2])
    (root / "zero.pt").write_bytes(b"")
    (root / "dir.pt").mkdir()
    (root / "bad.onnx").write_bytes(b"this is not an ONNX graph\n" * 10)
    (root / "model.engine").write_bytes(b"not an engine")

    world = SyntheticWorld(height=32, width=48, num_frames=3, seed=0)
    write_synthetic_bag(world, root / "bag")
    images, labels = [], []
    for f in SyntheticWorld(height=32, width=64, num_frames=2, seed=0).frames():
        images.append(f.rgb)
        labels.append(PanopticLabel(f.semantic, f.instance))
    write_kitti_step([LabeledClip("1", tuple(images), tuple(labels))], root / "data")
    (root / "emptydata").mkdir()
    for folder in ("images", "panoptic_maps"):  # the layout of a split, without any frame
        (root / "nolabels" / folder / "val" / "0001").mkdir(parents=True)

    node = "/**:\n  ros__parameters:\n    streaming:\n      score_threshold: .nan\n"
    (root / "nan.yaml").write_text(node)
    bomb = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        bomb.append(f"{name}: &{name} [{','.join(['*' + prev] * 9)}]")
    (root / "bomb.yaml").write_text("\n".join(bomb) + "\n")
    with (root / "big.yaml").open("w") as fh:
        line = "# " + "x" * 1021 + "\n"
        for _ in range(50 * 1024):
            fh.write(line)
    return {
        "ckpt": ckpt,
        "truncated": root / "half.pt",
        "empty": root / "zero.pt",
        "folder": root / "dir.pt",
        "bag": root / "bag",
        "data": root / "data",
        "emptydata": root / "emptydata",
        "nolabels": root / "nolabels",
        "badonnx": root / "bad.onnx",
        "engine": root / "model.engine",
        **{k: root / f"{k}.yaml" for k in ("nan", "bomb", "big")},
    }


@pytest.fixture
def paths(inputs: dict[str, Path], tmp_path: Path) -> dict[str, str]:
    """The placeholders: the shared inputs, ``tmp`` (an empty folder for outputs) and ``file``
    (a regular file: ``{file}/x`` cannot be created)."""
    (tmp_path / "a_file").write_text("a file, not a folder\n")
    out = {k: str(v) for k, v in inputs.items()}
    return {**out, "tmp": str(tmp_path / "out"), "file": str(tmp_path / "a_file")}


def fill(items: tuple[str, ...], paths: dict[str, str]) -> list[str]:
    return [item.format(**paths) for item in items]


def check_message(code: object, out: str, err: str, expect: list[str]) -> None:
    assert code not in (0, None), f"exit status {code}; stdout: {out}\nstderr: {err}"
    assert "Traceback" not in out + err, out + err
    message = err.strip()
    assert message, "no message on stderr"
    assert len(message.splitlines()) <= 6, f"not a short message:\n{message}"
    for piece in expect:
        assert piece in message, f"{piece!r} not in the message:\n{message}"


# --------------------------------------------------------------------------------------------
# the cases

REPLAY = f"replay {{bag}} --topic {TOPIC} --quiet"
EVALUATE = "evaluate --dataset kitti-step:{data} --out {tmp} --quiet"
EXPORT = "export --onnx {tmp}/m.onnx --height 32 --width 64"

CHECKPOINTS = [
    case(f"{cmd}-checkpoint-{kind}", f"{base} --checkpoint {{{kind}}}", f"{{{kind}}}", word)
    for cmd, base in (("replay", REPLAY), ("export", EXPORT), ("evaluate", EVALUATE))
    for kind, word in (("truncated", "truncated"), ("empty", "empty"), ("folder", "folder"))
]

BACKENDS = [
    case(
        "replay-onnx-missing",
        f"{REPLAY} --backend onnxruntime --checkpoint {{tmp}}/none.onnx",
        "{tmp}/none.onnx",
        "no such file",
    ),
    case(
        "replay-onnx-invalid",
        f"{REPLAY} --backend onnxruntime --checkpoint {{badonnx}}",
        "{badonnx}",
        "ONNX",
    ),
    case(
        "evaluate-onnx-invalid",
        f"{EVALUATE} --backend onnxruntime --checkpoint {{badonnx}}",
        "{badonnx}",
        "ONNX",
    ),
    case(
        "replay-onnx-empty",
        f"{REPLAY} --backend onnxruntime --checkpoint {{empty}}",
        "{empty}",
        "empty",
    ),
    case(
        "replay-tensorrt-missing",
        f"{REPLAY} --backend tensorrt --checkpoint {{engine}}",
        "TensorRT is not installed",
    ),
    case(
        "evaluate-tensorrt-missing",
        f"{EVALUATE} --backend tensorrt --checkpoint {{engine}}",
        "TensorRT is not installed",
    ),
]

DEVICES = [
    case("replay-device-cuda", f"{REPLAY} --checkpoint {{ckpt}} --device cuda", "--device cuda"),
    case("replay-device-gpu0", f"{REPLAY} --checkpoint {{ckpt}} --device gpu0", "'gpu0'"),
    case("replay-device-cuda7", f"{REPLAY} --checkpoint {{ckpt}} --device cuda:7", "cuda:7"),
    case("evaluate-device-cuda", f"{EVALUATE} --checkpoint {{ckpt}} --device cuda", "--device"),
    case("evaluate-device-gpu0", f"{EVALUATE} --checkpoint {{ckpt}} --device gpu0", "'gpu0'"),
    case(
        "replay-onnx-device-gpu0",
        f"{REPLAY} --backend onnxruntime --checkpoint {{badonnx}} --device gpu0",
        "'gpu0'",
    ),
]

OUTPUTS = [
    case(
        "extract-out-under-a-file",
        f"extract {{bag}} --topic {TOPIC} --out {{file}}/frames --quiet",
        "{file}",
    ),
    case(
        "synth-bag-under-a-file",
        "synth --out {file}/bag --frames 2 --height 16 --width 16 --quiet",
        "{file}",
    ),
    case(
        "synth-dataset-under-a-file",
        "synth --format kitti-step --out {file}/ds --frames 2 --height 16 --width 16 --quiet",
        "{file}",
    ),
    case("export-onnx-under-a-file", "export --checkpoint {ckpt} --onnx {file}/m.onnx", "{file}"),
    case(
        "export-engine-under-a-file",
        "export --checkpoint {ckpt} --onnx {tmp}/m.onnx --tensorrt {file}/m.engine",
        "{file}",
    ),
    case("write-defaults-under-a-file", "config write-defaults {file}/config", "{file}"),
    case(
        "replay-out-under-a-file", f"{REPLAY} --oracle --gt-topics {GT} --out {{file}}/o", "{file}"
    ),
    case(
        "replay-report-under-a-file",
        f"{REPLAY} --oracle --gt-topics {GT} --report {{file}}/r.json",
        "{file}",
    ),
    case(
        "replay-video-under-a-file",
        f"{REPLAY} --oracle --gt-topics {GT} --video {{file}}/v.mp4",
        "{file}",
    ),
    case(
        "evaluate-out-under-a-file",
        "evaluate --oracle --dataset kitti-step:{data} --out {file}/o",
        "{file}",
    ),
]

SIZES = [
    case("export-height-0", f"{EXPORT} --checkpoint {{ckpt}} --height 0", "--height 0"),
    case("export-height-negative", f"{EXPORT} --checkpoint {{ckpt}} --height -64", "--height -64"),
    case("export-width-0", f"{EXPORT} --checkpoint {{ckpt}} --width 0", "--width 0"),
    case("export-opset-3", f"{EXPORT} --checkpoint {{ckpt}} --opset 3", "--opset 3"),
    case(
        "synth-too-large",
        "synth --out {tmp}/bag --height 100000 --width 100000 --quiet",
        "100000",
        "memory",
    ),
    case(
        "synth-dataset-too-large",
        "synth --format kitti-step --out {tmp}/ds --height 100000 --width 100000 --quiet",
        "100000",
        "memory",
    ),
    case("synth-fps-nan", "synth --out {tmp}/bag --frames 2 --fps nan --quiet", "fps nan"),
    case("synth-fps-0", "synth --out {tmp}/bag --frames 2 --fps 0 --quiet", "fps 0"),
    case("synth-fps-negative", "synth --out {tmp}/bag --frames 2 --fps -5 --quiet", "fps -5"),
    case("synth-frames-0", "synth --out {tmp}/bag --frames 0 --quiet", "num_frames", "got 0"),
    case(
        "synth-height-0",
        "synth --out {tmp}/bag --frames 2 --height 0 --quiet",
        "height/width",
        "got 0x512",
    ),
]

REPLAYS = [
    case(
        "replay-gt-topics-not-in-bag",
        f"{REPLAY} --oracle --gt-topics /gt/sem,/gt/inst --report {{tmp}}/r.json",
        "/gt/sem",
    ),
    case(
        "replay-gt-topics-swapped",
        f"{REPLAY} --oracle --gt-topics /gt/instance,/gt/semantic --report {{tmp}}/r.json",
        "--gt-topics",
        "swapped",
    ),
    case("replay-gt-topics-one", f"{REPLAY} --oracle --gt-topics /gt/semantic", "--gt-topics"),
    case(
        "replay-gt-topics-camera",
        f"{REPLAY} --oracle --gt-topics {TOPIC},/gt/instance --out {{tmp}}/o",
        "--gt-topics",
        TOPIC,
    ),
    case(
        "replay-fps-0",
        f"{REPLAY} --oracle --gt-topics {GT} --video {{tmp}}/v.mp4 --fps 0",
        "--fps 0",
    ),
    case(
        "replay-fps-negative",
        f"{REPLAY} --oracle --gt-topics {GT} --video {{tmp}}/v.mp4 --fps -2",
        "--fps -2",
    ),
    case("replay-fps-nan", f"{REPLAY} --oracle --gt-topics {GT} --fps nan", "--fps nan"),
]

EXTRACTS = [
    case(
        f"extract-{name}",
        f"extract {{bag}} --topic {TOPIC} --out {{tmp}}/frames --quiet {span}",
        *expect,
    )
    for name, span, expect in (
        ("start-after-the-end", "--start 4000000000", ("start 4000000000.000 s", "outside")),
        ("end-before-the-start", "--end 1", ("end 1.000 s", "outside")),
        ("reversed", "--start 1700000002 --end 1700000001", ("not before", "1700000001.000")),
        ("empty-span", "--start 1700000000.1 --end 1700000000.1", ("not before",)),
        ("stride-0", "--stride 0", ("stride", "got 0")),
    )
]

EVALUATES = [
    case(
        "evaluate-empty-dataset-oracle",
        "evaluate --oracle --dataset kitti-step:{emptydata} --out {tmp} --quiet",
        "{emptydata}",
    ),
    case(
        "evaluate-empty-dataset-checkpoint",
        "evaluate --checkpoint {ckpt} --dataset kitti-step:{emptydata} --out {tmp} --quiet",
        "{emptydata}",
    ),
    case(
        "evaluate-split-without-frames-stored",
        "evaluate --dataset kitti-step --gt {nolabels} --pred {data} --out {tmp}/r.json --quiet",
        "--gt {nolabels}",
        "no labelled frame",
    ),
    case(
        "evaluate-split-without-frames-oracle",
        "evaluate --oracle --dataset kitti-step:{nolabels} --out {tmp} --quiet",
        "{nolabels}",
        "no frame",
    ),
    case(
        "evaluate-empty-ground-truth-stored",
        "evaluate --dataset kitti-step --gt {emptydata} --pred {data} --out {tmp}/r.json --quiet",
        "{emptydata}",
    ),
]

CONFIGS = [
    case("config-check-nan", "config check node {nan}", "streaming.score_threshold", "nan"),
    case("config-check-alias-bomb", "config check node {bomb}", "{bomb}", "alias"),
    case("config-check-50mb", "config check node {big}", "{big}", "bytes"),
    case("config-show-alias-bomb", "config show node --file {bomb}", "{bomb}", "alias"),
    case("replay-config-nan", f"{REPLAY} --oracle --gt-topics {GT} --config {{nan}}", "nan"),
]

ALL = [
    *CHECKPOINTS,
    *BACKENDS,
    *DEVICES,
    *OUTPUTS,
    *SIZES,
    *REPLAYS,
    *EXTRACTS,
    *EVALUATES,
    *CONFIGS,
]


@pytest.mark.parametrize("c", ALL)
def test_a_mistake_is_one_message_not_a_traceback(
    c: Case,
    paths: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    # as on a machine without a GPU and without TensorRT, also where they exist
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    capsys.readouterr()
    started = time.monotonic()
    try:
        code: object = main(fill(c.argv, paths))
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    elapsed = time.monotonic() - started
    out, err = capsys.readouterr()
    check_message(code, out, err, fill(c.expect, paths))
    assert elapsed < 30, f"took {elapsed:.0f} s to refuse"
    # refused before any work: no output file written (an output folder may have been created)
    assert not [p for p in Path(paths["tmp"]).rglob("*") if not p.is_dir()]


# --------------------------------------------------------------------------------------------
# as a user runs them: the console script in a subprocess


@pytest.mark.parametrize(
    "c",
    [
        case("replay-checkpoint-truncated", f"{REPLAY} --checkpoint {{truncated}}", "truncated"),
        case("config-check-alias-bomb", "config check node {bomb}", "{bomb}", "alias"),
        case("synth-fps-nan", "synth --out {tmp}/bag --frames 2 --fps nan --quiet", "fps nan"),
        case("export-height-0", f"{EXPORT} --checkpoint {{ckpt}} --height 0", "--height 0"),
        case("replay-device-gpu0", f"{REPLAY} --checkpoint {{ckpt}} --device gpu0", "'gpu0'"),
    ],
)
def test_the_vcups_command_exits_with_one_message(c: Case, paths: dict[str, str]) -> None:
    assert VCUPS, "the vcups console script is installed by `make setup`"
    proc = subprocess.run(
        [VCUPS, *fill(c.argv, paths)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
    )
    check_message(proc.returncode, proc.stdout, proc.stderr, fill(c.expect, paths))
