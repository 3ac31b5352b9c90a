"""core.utils' file helpers: nothing half-written is ever left looking complete."""

import subprocess
import sys

import pytest

from pipeline.core.utils import atomic_path, replace_path, temporary_sibling, write_json


def test_atomic_path_replaces_a_folder_only_when_the_new_one_is_complete(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_path(out) as tmp:
        tmp.mkdir()
        (tmp / "new.txt").write_text("half")
        raise RuntimeError("killed half way")
    assert [p.name for p in out.iterdir()] == ["old.txt"] and sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    with atomic_path(out) as tmp:
        tmp.mkdir()
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in out.iterdir()] == ["new.txt"] and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_killed_process_s_temporary_folder_is_removed_by_the_next_write(tmp_path):
    child = subprocess.run([sys.executable, "-c", "from pipeline.core.utils import temporary_sibling; import sys; "
                            f"print(temporary_sibling({str(tmp_path / 'a.json')!r}))"],
                           capture_output=True, text=True, check=True)
    left = tmp_path / child.stdout.strip().rsplit("/", 1)[1]
    assert left.is_dir()  # its process has exited, as a killed one would
    mine = temporary_sibling(tmp_path / "a.json")  # this process's own folder is kept until it is done
    write_json(tmp_path / "a.json", {"x": 1})
    assert not left.exists() and mine.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["a.json", mine.name])


def test_replace_path_swaps_files_and_folders(tmp_path):
    (tmp_path / "new.txt").write_text("new")
    (tmp_path / "old.txt").write_text("old")
    replace_path(tmp_path / "new.txt", tmp_path / "old.txt")
    assert (tmp_path / "old.txt").read_text() == "new" and not (tmp_path / "new.txt").exists()
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x").write_text("a")
    replace_path(tmp_path / "a", tmp_path / "b")
    assert (tmp_path / "b" / "x").read_text() == "a" and sorted(p.name for p in tmp_path.iterdir()) == ["b", "old.txt"]
