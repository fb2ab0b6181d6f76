"""The data dir's record files (keys.json, hooks.json share adapters/app/record_file.py): a
corrupt file is refused at start and ignored by a running reader, an edit that fails leaves the
file as it was, and a reader sees another process' edit once RELOAD_CHECK_S has passed."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import msgspec
import pytest
from tradingd.adapters.app.record_file import RELOAD_CHECK_S, RecordFile
from tradingd.engine.errors import ValidationError

log = logging.getLogger("tests.record_file")


class Names:
    """A store in miniature: what `on_load` gave it last."""

    def __init__(self, path: Path | None, monotonic=lambda: 0.0) -> None:
        self.loaded: list[str] = []
        self.file: RecordFile[str] = RecordFile(
            path,
            decode=msgspec.json.Decoder(list[str]).decode,
            encode=msgspec.json.encode,
            on_load=self.on_load,
            what="names file",
            plural="names",
            log=log,
            monotonic=monotonic,
        )
        self.file.load()

    def on_load(self, names: list[str]) -> None:
        self.loaded = names


def test_an_edit_is_written_private_and_loaded(tmp_path: Path) -> None:
    names = Names(tmp_path / "names.json")
    with names.file.edit() as records:
        records.append("a")
    assert names.loaded == ["a"]
    assert msgspec.json.decode((tmp_path / "names.json").read_bytes()) == ["a"]
    assert stat.S_IMODE((tmp_path / "names.json").stat().st_mode) == 0o600


def test_a_failed_edit_leaves_the_file_and_the_records(tmp_path: Path) -> None:
    names = Names(tmp_path / "names.json")
    with names.file.edit() as records:
        records.append("a")
    with pytest.raises(RuntimeError), names.file.edit() as records:
        records.append("b")
        raise RuntimeError("refused")
    assert names.loaded == ["a"]
    assert Names(tmp_path / "names.json").loaded == ["a"]


def test_a_corrupt_file_is_refused_at_load_naming_it(tmp_path: Path) -> None:
    (tmp_path / "names.json").write_text("{not json")
    with pytest.raises(ValidationError, match="names file .*names.json is corrupt"):
        Names(tmp_path / "names.json")


def test_a_reader_keeps_its_records_when_the_file_turns_corrupt(tmp_path: Path, caplog) -> None:
    now = [0.0]
    reader = Names(tmp_path / "names.json", monotonic=lambda: now[0])
    with Names(tmp_path / "names.json").file.edit() as records:
        records.append("a")
    reader.file.refresh_if_due()
    assert reader.loaded == []  # not yet: checked at most every RELOAD_CHECK_S
    now[0] += RELOAD_CHECK_S
    reader.file.refresh_if_due()
    assert reader.loaded == ["a"]
    (tmp_path / "names.json").write_text("[1")
    with caplog.at_level(logging.ERROR, logger=log.name):
        reader.file.refresh()
    assert reader.loaded == ["a"]
    assert "names file unreadable; keeping the names loaded before" in caplog.text


def test_without_a_path_edits_stay_in_memory(tmp_path: Path) -> None:
    names = Names(None)
    with names.file.edit() as records:
        records.append("a")
    with names.file.edit() as records:
        records.append("b")
    assert names.loaded == ["a", "b"]
    assert list(tmp_path.iterdir()) == []
