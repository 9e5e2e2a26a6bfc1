"""The shared job helpers: atomic writes, shards, locks and SIGTERM as Ctrl-C."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from pseudo_fakes import read_png

from vcups_core import jobs
from vcups_core.jobs import (
    OutputPathError,
    StagedOutput,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_png,
    atomic_write_text,
    file_lock,
    hold_folder,
    is_complete_png,
    parse_shard,
    remove_temp_files,
    select_shard,
    shard_from_env,
    signals_deferred,
    terminate_as_interrupt,
)


def test_atomic_write_replaces_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "a.bin"
    atomic_write_bytes(target, b"first")
    atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]
    mode = target.stat().st_mode & 0o777
    assert mode == 0o666 & ~_umask()  # normal permissions, not mkstemp's 0600


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


def test_a_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "a.txt"
    atomic_write_text(target, "old")

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space"):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_atomic_write_json(tmp_path: Path) -> None:
    target = tmp_path / "m.json"
    atomic_write_json(target, {"b": 1, "a": [1, 2]})
    text = target.read_text()
    assert text.endswith("}\n")
    assert json.loads(text) == {"b": 1, "a": [1, 2]}
    with pytest.raises(TypeError):
        atomic_write_json(tmp_path / "bad.json", {"x": object()})
    assert not (tmp_path / "bad.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]


def test_atomic_write_png_is_lossless(tmp_path: Path) -> None:
    ids = np.arange(6 * 7, dtype=np.uint16).reshape(6, 7) * 1000  # up to 41000 > 255
    atomic_write_png(tmp_path / "i.png", ids)
    back = read_png(tmp_path / "i.png")
    assert back.dtype == np.uint16 and np.array_equal(back, ids)
    sem = np.full((6, 7), 255, np.uint8)
    sem[0, 0] = 3
    atomic_write_png(tmp_path / "s.png", sem)
    assert np.array_equal(read_png(tmp_path / "s.png"), sem)
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0] = 200  # red
    atomic_write_png(tmp_path / "rgb.png", rgb)
    assert np.array_equal(read_png(tmp_path / "rgb.png", cv2.IMREAD_COLOR)[:, :, ::-1], rgb)


@pytest.mark.parametrize(
    "array",
    [np.zeros((4, 4), np.float32), np.zeros((4, 4, 3), np.uint16), np.zeros((4,), np.uint8)],
)
def test_atomic_write_png_rejects_other_arrays(tmp_path: Path, array: np.ndarray) -> None:
    with pytest.raises(ValueError, match="PNG: expected"):
        atomic_write_png(tmp_path / "x.png", array)
    assert not list(tmp_path.iterdir())


def test_remove_temp_files_only_removes_matching_temporaries(tmp_path: Path) -> None:
    (tmp_path / ".a.png.123.abcd.tmp").write_bytes(b"")
    (tmp_path / ".b.png.123.abcd.tmp").write_bytes(b"")
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "keep.tmp").write_bytes(b"")  # not hidden: not ours
    assert remove_temp_files(tmp_path, jobs.temp_name_prefix(tmp_path / "a.png")) == 1
    assert remove_temp_files(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "keep.tmp"]
    assert remove_temp_files(tmp_path / "missing") == 0


def _terminate_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)
    for _ in range(1000):  # the handler runs between bytecodes, in this (main) thread
        pass


def test_sigterm_becomes_keyboard_interrupt_and_the_handler_is_restored() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with terminate_as_interrupt(), pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        _terminate_self()
    assert signal.getsignal(signal.SIGTERM) == before


def test_terminate_as_interrupt_outside_the_main_thread_changes_nothing() -> None:
    before = signal.getsignal(signal.SIGTERM)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with terminate_as_interrupt():
                assert signal.getsignal(signal.SIGTERM) == before
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert errors == []


@pytest.mark.parametrize(("text", "shard"), [("0/1", (0, 1)), ("3/4", (3, 4)), (" 1 / 2 ", (1, 2))])
def test_parse_shard(text: str, shard: tuple[int, int]) -> None:
    assert parse_shard(text) == shard


@pytest.mark.parametrize("text", ["", "1", "2/2", "-1/2", "1/0", "a/b", "1/2/3", "0.5/2"])
def test_parse_shard_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="I/N"):
        parse_shard(text)


def test_shard_from_env() -> None:
    assert shard_from_env({}) is None
    assert shard_from_env({"RANK": "2", "WORLD_SIZE": "3", "LOCAL_RANK": "0"}) == (2, 3)
    for env in ({"RANK": "1"}, {"RANK": "3", "WORLD_SIZE": "3"}, {"RANK": "x", "WORLD_SIZE": "2"}):
        with pytest.raises(ValueError, match="RANK"):
            shard_from_env(env)


def test_select_shard_partitions_round_robin() -> None:
    items = list("abcdefg")
    shards = [select_shard(items, i, 3) for i in range(3)]
    assert shards == [["a", "d", "g"], ["b", "e"], ["c", "f"]]
    assert sorted(x for s in shards for x in s) == items
    assert select_shard(items, 0, 1) == items
    assert select_shard(items, 7, 8) == []
    with pytest.raises(ValueError, match="shard 3/3"):
        select_shard(items, 3, 3)


def test_file_lock_excludes_other_holders(tmp_path: Path) -> None:
    lock = tmp_path / ".lock"
    with file_lock(lock):
        fd = os.open(lock, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free again
    finally:
        os.close(fd)


def test_staged_output_appears_only_when_committed(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "bag"
    with StagedOutput(target) as staged:
        assert staged.path.name == "bag" and staged.path.parent.parent == tmp_path / "sub"
        staged.path.mkdir()
        (staged.path / "bag.mcap").write_text("data")
        assert not target.exists()  # the missing folder was created, the output is staged
    assert (target / "bag.mcap").read_text() == "data"
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["bag"]

    def interrupted() -> None:
        with StagedOutput(tmp_path / "file.json") as staged:
            staged.path.write_text("half")
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub"]  # nothing, no temporary

    staged = StagedOutput(tmp_path / "nothing.mp4")
    staged.open()
    assert staged.commit() is False  # the job wrote nothing: the target stays as it was
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub"]


def test_staged_output_refuses_or_replaces_an_existing_target(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.mkdir()
    (target / "old").write_text("finished")
    with pytest.raises(FileExistsError, match=f"{target}: already exists; remove it or choose"):
        StagedOutput(target).open()
    assert (target / "old").read_text() == "finished"
    assert len(list(tmp_path.iterdir())) == 1
    for kwargs in ({"overwrite": True}, {"replaceable": lambda p: (p / "old").exists()}):
        with StagedOutput(target, **kwargs) as staged:  # type: ignore[arg-type]
            staged.path.write_text("new")  # a folder is replaced by a file
        assert target.read_text() == "new"
        target.unlink()
        target.mkdir()
        (target / "old").write_text("finished")


def test_staged_output_removes_what_a_killed_run_left(tmp_path: Path) -> None:
    target = tmp_path / "a"
    dead = tmp_path / ".a.999999999.0123abcd.tmp"  # a killed run's staging folder
    (dead / "a").mkdir(parents=True)
    other = tmp_path / ".a.b.999999999.0123abcd.tmp"  # belongs to the target "a.b"
    other.mkdir()
    live_file = tmp_path / f".a.{os.getpid()}.0123abcd.tmp"  # an atomic write in progress
    live_file.write_bytes(b"")
    assert jobs.temp_names_of(target) == [live_file, dead]
    with StagedOutput(target) as staged:
        staged.path.write_text("x")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["a", other.name, live_file.name])


def test_staged_output_refuses_while_another_process_writes_the_target(tmp_path: Path) -> None:
    first = StagedOutput(tmp_path / "a")
    first.open()
    try:
        with pytest.raises(OutputPathError, match="another process is writing it right now"):
            StagedOutput(tmp_path / "a").open()  # a second open file description: locked out
    finally:
        first.discard()
    assert list(tmp_path.iterdir()) == []


def test_staged_output_names_a_folder_it_cannot_use(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputPathError, match=f"{tmp_path / 'file' / 'out'}: cannot create its"):
        StagedOutput(tmp_path / "file" / "out").open()


def test_hold_folder_excludes_a_second_holder(tmp_path: Path) -> None:
    with hold_folder(tmp_path / "out", "vcups extract"):
        assert (tmp_path / "out").is_dir()
        with (
            pytest.raises(OutputPathError, match="another vcups extract is writing"),
            hold_folder(tmp_path / "out", "vcups extract"),
        ):
            pass
    with hold_folder(tmp_path / "out"):
        pass


def test_signals_are_deferred_to_the_end_of_the_block() -> None:
    reached = []

    def deferred() -> None:
        with signals_deferred():
            _terminate_self()
            reached.append("end of block")
        reached.append("after")  # pragma: no cover - the interrupt comes first

    with terminate_as_interrupt(), pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        deferred()
    assert reached == ["end of block"]


def test_is_complete_png(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    atomic_write_png(path, np.arange(48, dtype=np.uint8).reshape(4, 4, 3))
    assert is_complete_png(path)
    data = path.read_bytes()
    for broken in (b"", data[:-1], data[:-12], data[:40], data[:30] + b"\0" + data[31:]):
        path.write_bytes(broken)
        assert not is_complete_png(path), broken
    path.write_bytes(data + b"junk")
    assert not is_complete_png(path)
    assert not is_complete_png(tmp_path / "missing.png")
