"""Writing through a temporary file (cryoavae.core.atomic): all of a file or none of it."""

import os

import pytest

from cryoavae.core.atomic import atomic_path, write_text_atomic
from cryoavae.core.errors import InputError


def test_a_failed_write_leaves_neither_the_file_nor_a_temporary(tmp_path):
    target = tmp_path / "out" / "table.star"
    with pytest.raises(RuntimeError, match="crash"):
        with atomic_path(target) as tmp:
            assert tmp.parent == target.parent and tmp.name.endswith(".star")  # format by suffix
            tmp.write_text("half a fi")
            raise RuntimeError("crash")
    assert list(target.parent.iterdir()) == []


def test_a_failed_rewrite_keeps_the_old_file_and_a_good_one_replaces_it(tmp_path):
    target = tmp_path / "metrics.json"
    write_text_atomic(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("new, half")
            raise RuntimeError
    assert target.read_text() == "old"
    write_text_atomic(target, "new")
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == [target.name]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # as open() makes it, not 0600


def test_a_file_where_the_folder_should_be_is_named(tmp_path):
    (tmp_path / "models").write_text("a file, not a folder")
    with pytest.raises(InputError, match=r"a file stands where its folder should be \(.*models\)"):
        write_text_atomic(tmp_path / "models" / "a" / "latents.tsv", "x")
    with pytest.raises(InputError, match="it is a folder"):
        write_text_atomic(tmp_path, "x")
