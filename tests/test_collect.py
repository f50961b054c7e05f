"""autograder.collect: zip collection that one bad file cannot stop, and students' identity.

Every archive is built here with zipfile; the hostile ones by setting ZipInfo fields directly
(names, modes, flags, sizes, CRCs). No kernels run: these tests take well under a second each.
"""

from __future__ import annotations

import io
import json
import random
import re
import stat
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import pytest

from autograder import collect
from autograder.collect import Collected, collect_zips, copy_capped, name_problem

KNOWN = {"04_moths": ["moths"], "toy": ["toy"]}


def nb(tag: str) -> bytes:
    """A small notebook whose content says where it came from."""
    return json.dumps({"cells": [], "metadata": {"tag": tag}, "nbformat": 4}).encode()


def make_zip(path: Path, members) -> Path:
    """Write ``members`` to a zip at ``path``.

    ``members`` is a dict of name to bytes, or a list of ``(name or ZipInfo, bytes)`` or
    ``(ZipInfo, bytes, fields)``: ``fields`` are set on the ZipInfo after it is written (the
    central directory, written on closing, then says them; zipfile resets some on writing).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data, *after in members.items() if isinstance(members, dict) else members:
            zf.writestr(name, data)
            for key, value in (after[0] if after else {}).items():
                setattr(zf.infolist()[-1], key, value)
    return path


def info(name: str, mode: int = stat.S_IFREG | 0o644, **fields) -> zipfile.ZipInfo:
    """A ZipInfo with a Unix mode and any other fields set directly."""
    zi = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
    zi.compress_type = zipfile.ZIP_DEFLATED
    zi.external_attr = mode << 16
    for key, value in fields.items():
        setattr(zi, key, value)
    return zi


def run(tmp_path: Path, known=KNOWN) -> Collected:
    return collect_zips(tmp_path / "subs", tmp_path / "out" / ".collected", known)


def files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder``, by its path relative to it."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def students(result: Collected) -> set[str]:
    return {p.name for p in result.folder.iterdir()}


def tag(result: Collected, student: str, assignment: str, notebook: str) -> str:
    path = result.folder / student / assignment / f"{notebook}.ipynb"
    return json.loads(path.read_text())["metadata"]["tag"]


@pytest.fixture
def subs(tmp_path) -> Path:
    folder = tmp_path / "subs"
    folder.mkdir()
    return folder


def class_of_three(subs: Path) -> None:
    for who in ("amy", "ben", "cat"):
        make_zip(subs / f"{who}.zip", {"04_moths/moths.ipynb": nb(who)})


# --- Per-student archives: identity from the archive's own name ----------------------------


def test_class_collected_with_what_was_taken(tmp_path, subs):
    class_of_three(subs)
    result = run(tmp_path)
    assert isinstance(result, Collected)
    assert result.problems == {}
    assert students(result) == {"amy", "ben", "cat"}
    assert tag(result, "ben", "04_moths", "moths") == "ben"
    assert result.taken[("amy", "04_moths")] == "amy.zip:04_moths/moths.ipynb"


@pytest.mark.parametrize(
    "member",
    [
        "course/04_moths/moths.ipynb",
        "04_moths/moths.ipynb",
        "submission/04_moths/moths.ipynb",
        "moths.ipynb",
        "toy/04_moths/moths.ipynb",
        "04_moths\\moths.ipynb",
    ],
)
def test_notebook_found_at_any_depth_under_its_assignment(tmp_path, subs, member):
    make_zip(subs / "amy.zip", {member: nb("amy")})
    result = run(tmp_path)
    assert result.problems == {}
    assert files(result.folder) == {"amy/04_moths/moths.ipynb": nb("amy")}


def test_course_folder_inside_lms_zips_is_not_a_student(tmp_path, subs):
    for who in ("amy", "ben"):
        make_zip(subs / f"{who}.zip", {"course/04_moths/moths.ipynb": nb(who)})
    result = run(tmp_path)
    assert students(result) == {"amy", "ben"}
    assert "course" not in result.problems
    assert tag(result, "amy", "04_moths", "moths") == "amy"


def test_another_students_folder_inside_a_zip_is_the_zips_owners(tmp_path, subs):
    make_zip(subs / "zoe.zip", {"carl/04_moths/moths.ipynb": nb("zoe")})
    make_zip(subs / "carl.zip", {"04_moths/moths.ipynb": nb("carl")})
    result = run(tmp_path)
    assert result.problems == {}
    assert tag(result, "zoe", "04_moths", "moths") == "zoe"
    assert tag(result, "carl", "04_moths", "moths") == "carl"


@pytest.mark.parametrize("names", [("jo@uni", "jo_uni"), ("[x]", "a b"), ("Amy", "amy")])
def test_names_are_stored_exactly(tmp_path, subs, names):
    for who in names:
        make_zip(subs / f"{who}.zip", {"04_moths/moths.ipynb": nb(who)})
    result = run(tmp_path)
    assert result.problems == {}
    assert students(result) == set(names)
    for who in names:
        assert tag(result, who, "04_moths", "moths") == who


@pytest.mark.parametrize("name", ["", ".", "..", ".hidden", "a/b", "a\0b"])
def test_names_that_cannot_be_folders_are_refused(name):
    assert name_problem(name)


@pytest.mark.parametrize("name", ["amy", "jo@uni", "[x]", "a b", "a..b", "Amy-O'Neil", "*"])
def test_names_that_can_be_folders_are_accepted(name):
    assert name_problem(name) is None


@pytest.mark.parametrize("archive", [".zip", "..zip", "...zip", ".amy.zip"])
def test_archive_names_that_cannot_be_students_are_noted_and_skipped(tmp_path, subs, archive):
    make_zip(subs / archive, {"04_moths/moths.ipynb": nb("x")})
    class_of_three(subs)
    result = run(tmp_path)
    assert students(result) == {"amy", "ben", "cat"}
    assert list(result.problems) == [archive]
    assert archive in result.problems[archive][0]


def test_two_archives_for_one_student_take_neither(tmp_path, subs):
    make_zip(subs / "amy.zip", {"04_moths/moths.ipynb": nb("amy 1")})
    make_zip(subs / "amy.ZIP", {"04_moths/moths.ipynb": nb("amy 2")})
    make_zip(subs / "ben.zip", {"04_moths/moths.ipynb": nb("ben")})
    result = run(tmp_path)
    assert students(result) == {"ben"}
    [note] = result.problems["amy"]
    assert "amy.ZIP" in note and "amy.zip" in note and "neither" in note


def test_bulk_and_own_archive_for_one_assignment_take_neither(tmp_path, subs):
    make_zip(subs / "04_moths.zip", {"amy_1_moths.ipynb": nb("bulk"), "ben_moths.ipynb": nb("b")})
    make_zip(subs / "amy.zip", {"04_moths/moths.ipynb": nb("own"), "toy/toy.ipynb": nb("toy")})
    result = run(tmp_path)
    assert files(result.folder) == {
        "ben/04_moths/moths.ipynb": nb("b"),
        "amy/toy/toy.ipynb": nb("toy"),
    }
    [note] = result.problems["amy"]
    assert "04_moths.zip and amy.zip" in note and "04_moths" in note


def test_same_notebook_twice_takes_the_shallowest_and_says_so(tmp_path, subs):
    make_zip(
        subs / "amy.zip",
        {
            "old/deep/04_moths/moths.ipynb": nb("deep"),
            "04_moths/moths.ipynb": nb("shallow"),
            "b/04_moths/moths.ipynb": nb("b"),
        },
    )
    result = run(tmp_path)
    assert tag(result, "amy", "04_moths", "moths") == "shallow"
    [note] = result.problems["amy"]
    assert "3 times" in note and "'04_moths/moths.ipynb'" in note
    assert result.taken[("amy", "04_moths")] == "amy.zip:04_moths/moths.ipynb"


def test_only_known_notebooks_are_taken(tmp_path, subs):
    make_zip(
        subs / "amy.zip",
        {
            "04_moths/moths.ipynb": nb("amy"),
            "04_moths/notes.txt": b"hello",
            "04_moths/scratch.ipynb": nb("scratch"),
            "04_moths/data/big.csv": b"1,2\n",
            "04_moths/.ipynb_checkpoints/moths.ipynb": nb("checkpoint"),
            "__MACOSX/04_moths/._moths.ipynb": b"\0\5\26\7",
            "unknown_assignment/other.ipynb": nb("other"),
        },
    )
    result = run(tmp_path)
    assert result.problems == {}
    assert files(result.folder) == {"amy/04_moths/moths.ipynb": nb("amy")}


def test_several_assignments_in_one_archive(tmp_path, subs):
    make_zip(subs / "amy.zip", {"04_moths/moths.ipynb": nb("m"), "toy.ipynb": nb("t")})
    result = run(tmp_path)
    assert files(result.folder) == {
        "amy/04_moths/moths.ipynb": nb("m"),
        "amy/toy/toy.ipynb": nb("t"),
    }
    assert set(result.taken) == {("amy", "04_moths"), ("amy", "toy")}


def test_notebook_name_shared_by_two_assignments_needs_its_folder(tmp_path, subs):
    known = {"a1": ["ex"], "a2": ["ex"]}
    make_zip(subs / "amy.zip", {"ex.ipynb": nb("loose")})
    make_zip(subs / "ben.zip", {"work/a2/ex.ipynb": nb("ben")})
    result = run(tmp_path, known)
    assert files(result.folder) == {"ben/a2/ex.ipynb": nb("ben")}
    assert "several assignments" in result.problems["amy"][0]


def test_archive_without_any_known_notebook_is_noted(tmp_path, subs):
    make_zip(subs / "amy.zip", {"readme.txt": b"I forgot"})
    result = run(tmp_path)
    assert students(result) == set()
    assert "holds none of" in result.problems["amy"][0]


def test_dest_is_wiped_and_recreated(tmp_path, subs):
    dest = tmp_path / "out" / ".collected"
    (dest / "ghost" / "04_moths").mkdir(parents=True)
    (dest / "ghost" / "04_moths" / "moths.ipynb").write_bytes(nb("ghost"))
    class_of_three(subs)
    result = run(tmp_path)
    assert result.folder == dest
    assert students(result) == {"amy", "ben", "cat"}


# --- Bulk LMS downloads ----------------------------------------------------------------------


def test_bulk_download_forms(tmp_path, subs):
    make_zip(
        subs / "04_moths.zip",
        {
            "amy_12345_67890_moths.ipynb": nb("amy"),
            "ben_moths.ipynb": nb("ben"),
            "cat/moths.ipynb": nb("cat"),
            "dan_late_moths.ipynb": nb("dan"),
            "readme.txt": b"from the LMS",
            "eve_notes.pdf": b"%PDF",
        },
    )
    result = run(tmp_path)
    assert result.problems == {}
    assert students(result) == {"amy", "ben", "cat", "dan"}
    assert tag(result, "amy", "04_moths", "moths") == "amy"
    assert result.taken[("cat", "04_moths")] == "04_moths.zip:cat/moths.ipynb"


def test_bulk_download_of_folders_as_the_grading_tests_use(tmp_path, subs):
    make_zip(subs / "toy.zip", {"correct/toy.ipynb": nb("c"), "wrong_cube/toy.ipynb": nb("w")})
    result = run(tmp_path)
    assert result.problems == {}
    assert files(result.folder) == {
        "correct/toy/toy.ipynb": nb("c"),
        "wrong_cube/toy/toy.ipynb": nb("w"),
    }


def test_bulk_bad_member_flags_only_the_student_it_names(tmp_path, subs):
    link = info("carl_moths.ipynb", stat.S_IFLNK | 0o777)
    make_zip(
        subs / "04_moths.zip",
        [("amy_moths.ipynb", nb("amy")), (link, b"/etc/passwd"), ("ben_moths.ipynb", nb("ben"))],
    )
    result = run(tmp_path)
    assert students(result) == {"amy", "ben"}
    assert list(result.problems) == ["carl"]
    assert "symbolic link" in result.problems["carl"][0]


def test_bulk_bad_member_naming_nobody_is_noted_under_the_archive(tmp_path, subs):
    make_zip(
        subs / "04_moths.zip",
        {"../moths.ipynb": nb("x"), "amy_moths.ipynb": nb("amy"), "moths.ipynb": nb("?")},
    )
    result = run(tmp_path)
    assert students(result) == {"amy"}
    assert list(result.problems) == ["04_moths.zip"]
    notes = " ".join(result.problems["04_moths.zip"])
    assert "traversal" in notes and "cannot tell whose 'moths.ipynb'" in notes


def test_bulk_two_files_for_one_notebook_take_neither(tmp_path, subs):
    make_zip(
        subs / "04_moths.zip",
        {"amy_1_moths.ipynb": nb("1"), "amy_2_moths.ipynb": nb("2"), "ben_moths.ipynb": nb("b")},
    )
    result = run(tmp_path)
    assert students(result) == {"ben"}
    assert "none taken" in result.problems["amy"][0]


# --- Members that break a rule -------------------------------------------------------------


def assert_only_amy_flagged(result: Collected, words: str) -> None:
    assert students(result) == {"ben", "cat"}
    assert list(result.problems) == ["amy"]
    [note] = result.problems["amy"]
    assert "amy.zip" in note and words in note, note


@pytest.mark.parametrize(
    ("member", "words"),
    [
        ("04_moths/ ..", "traversal"),
        (" ../04_moths/moths.ipynb", "traversal"),
        ("04_moths/../../moths.ipynb", "traversal"),
        ("..\\..\\04_moths\\moths.ipynb", "traversal"),
        ("04_moths/.. /moths.ipynb", "traversal"),
        ("/etc/04_moths/moths.ipynb", "absolute"),
        ("\\04_moths\\moths.ipynb", "absolute"),
        ("C:/04_moths/moths.ipynb", "absolute"),
        ("04_moths/ ", "directory posing as a file"),
        ("04_moths/.", "directory posing as a file"),
    ],
)
def test_bad_member_name_flags_only_that_student(tmp_path, subs, member, words):
    class_of_three(subs)
    make_zip(subs / "amy.zip", {member: nb("evil"), "04_moths/moths.ipynb": nb("amy")})
    result = run(tmp_path)
    assert_only_amy_flagged(result, words)


def test_traversal_writes_nothing_outside_dest(tmp_path, subs):
    class_of_three(subs)
    make_zip(subs / "amy.zip", {" ../04_moths/moths.ipynb": nb("evil")})
    make_zip(subs / "ben.zip", {"../../../moths.ipynb": nb("evil"), "x/ ../../y": b"evil"})
    before = files(tmp_path)
    result = run(tmp_path)
    after = files(tmp_path)
    new = {path for path in after if path not in before}
    assert all(path.startswith("out/.collected/") for path in new), new
    assert nb("evil") not in after.values()
    assert set(result.problems) == {"amy", "ben"}
    assert students(result) == {"cat"}


@pytest.mark.parametrize(
    ("zi", "words"),
    [
        (info("04_moths/moths.ipynb", stat.S_IFLNK | 0o777), "symbolic link"),
        (info("04_moths/moths.ipynb", stat.S_IFIFO | 0o644), "not a regular file"),
        (info("04_moths/moths.ipynb", stat.S_IFDIR | 0o755), "directory posing as a file"),
        (info("04_moths/moths.ipynb", 0, external_attr=0x10), "directory posing as a file"),
        (info("04_moths/moths.ipynb/", stat.S_IFDIR | 0o755), "with contents"),
        ((info("04_moths/moths.ipynb"), {"flag_bits": 0x1}), "encrypted"),
        ((info("04_moths/moths.ipynb"), {"flag_bits": 0x40}), "encrypted"),
        (info("04_moths/moths.ipynb", compress_type=zipfile.ZIP_BZIP2), "compression method"),
        (info("04_moths/moths.ipynb", compress_type=zipfile.ZIP_LZMA), "compression method"),
    ],
)
def test_bad_member_kind_flags_only_that_student(tmp_path, subs, zi, words):
    class_of_three(subs)
    zi, after = zi if isinstance(zi, tuple) else (zi, {})
    make_zip(subs / "amy.zip", [(zi, b"../../../../etc/passwd", after)])
    result = run(tmp_path)
    assert_only_amy_flagged(result, words)


def test_path_both_file_and_folder_is_refused(tmp_path, subs):
    class_of_three(subs)
    make_zip(subs / "amy.zip", {"04_moths": b"file", "04_moths/moths.ipynb": nb("amy")})
    result = run(tmp_path)
    assert_only_amy_flagged(result, "both a file and a folder")


def test_bad_member_that_would_be_ignored_still_flags_the_archive(tmp_path, subs):
    class_of_three(subs)
    make_zip(subs / "amy.zip", [("04_moths/moths.ipynb", nb("amy")), (info("x", 0o120777), b"/")])
    result = run(tmp_path)
    assert_only_amy_flagged(result, "symbolic link")


def test_too_many_members(tmp_path, subs):
    class_of_three(subs)
    make_zip(subs / "amy.zip", {f"junk/{i}.txt": b"" for i in range(collect.MAX_MEMBERS + 1)})
    result = run(tmp_path)
    assert_only_amy_flagged(result, "1,001 members")


def lie_about_sizes(path: Path, members: dict[str, int]) -> None:
    """A zip whose central directory claims ``members`` sizes (compressed = uncompressed)."""
    with zipfile.ZipFile(path, "w") as zf:
        for name in members:
            zf.writestr(name, nb(name))
        for zi in zf.infolist():
            zi.file_size = zi.compress_size = members[zi.filename]


def test_member_over_the_size_limit_by_its_header(tmp_path, subs):
    class_of_three(subs)
    lie_about_sizes(subs / "amy.zip", {"04_moths/moths.ipynb": collect.MAX_MEMBER + 1})
    result = run(tmp_path)
    assert_only_amy_flagged(result, "limit 50 MiB")


def test_archive_over_the_total_limit_by_its_headers(tmp_path, subs):
    class_of_three(subs)
    lie_about_sizes(subs / "amy.zip", {f"{i}/moths.ipynb": 45 * collect.MiB for i in range(5)})
    result = run(tmp_path)
    assert_only_amy_flagged(result, "in all (limit 200 MiB)")


def test_compression_ratio_limit(tmp_path, subs):
    class_of_three(subs)
    make_zip(subs / "amy.zip", {"04_moths/moths.ipynb": bytes(4 * collect.MiB)})
    result = run(tmp_path)
    assert_only_amy_flagged(result, "compression ratio")


def test_small_members_are_not_held_to_the_ratio(tmp_path, subs):
    make_zip(subs / "amy.zip", {"04_moths/moths.ipynb": b" " * 100_000})
    result = run(tmp_path)
    assert result.problems == {}
    assert files(result.folder) == {"amy/04_moths/moths.ipynb": b" " * 100_000}


def zero_bomb(path: Path, size: int, name="04_moths/moths.ipynb", others=None) -> None:
    """A zip with one genuine deflate stream of ``size`` zero bytes, about size/1000 on disk.

    The deflate stream is built from one fully flushed block of 1 MiB of zeros repeated
    (a full flush resets the compressor, so each repetition is the same bytes), written as
    a stored member whose ZipInfo is then set to say deflated, ``size`` bytes, and the CRC.
    ``others`` are written after it, plainly.
    """
    zeros = bytes(collect.MiB)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    stream = block * (size // len(zeros)) + compressor.flush()
    crc = 0
    for _ in range(size // len(zeros)):
        crc = zlib.crc32(zeros, crc)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(name, stream)
        [zi] = zf.infolist()
        zi.compress_type, zi.file_size, zi.CRC = zipfile.ZIP_DEFLATED, size, crc
        for other, data in (others or {}).items():
            zf.writestr(other, data, zipfile.ZIP_DEFLATED)


def test_zero_bomb_is_refused_without_being_inflated(tmp_path, subs):
    class_of_three(subs)
    zero_bomb(subs / "amy.zip", 1024 * collect.MiB)
    assert (subs / "amy.zip").stat().st_size < 2 * collect.MiB
    with zipfile.ZipFile(subs / "amy.zip") as zf, zf.open("04_moths/moths.ipynb") as member:
        assert member.read(collect.MiB) == bytes(collect.MiB)  # a genuine 1 GiB of zeros
    tracemalloc.start()
    try:
        result = run(tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * collect.MiB, peak
    assert_only_amy_flagged(result, "limit 50 MiB")


def test_zero_bomb_under_the_size_limit_is_refused_by_its_ratio(tmp_path, subs):
    class_of_three(subs)
    zero_bomb(subs / "amy.zip", 40 * collect.MiB)
    tracemalloc.start()
    try:
        result = run(tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * collect.MiB, peak
    assert_only_amy_flagged(result, "compression ratio")


# --- Archives that cannot be read ------------------------------------------------------------


def test_not_a_zip(tmp_path, subs):
    class_of_three(subs)
    (subs / "amy.zip").write_bytes(b"This is not a zip, it is my essay.\n" * 10)
    result = run(tmp_path)
    assert_only_amy_flagged(result, "not a readable zip")


def test_truncated_zip(tmp_path, subs):
    class_of_three(subs)
    path = make_zip(subs / "amy.zip", {"04_moths/moths.ipynb": nb("amy") * 50})
    path.write_bytes(path.read_bytes()[:-30])
    result = run(tmp_path)
    assert_only_amy_flagged(result, "not a readable zip")


def test_empty_file(tmp_path, subs):
    class_of_three(subs)
    (subs / "amy.zip").write_bytes(b"")
    assert_only_amy_flagged(run(tmp_path), "not a readable zip")


def test_bad_crc_writes_nothing_for_that_student(tmp_path, subs):
    class_of_three(subs)
    with zipfile.ZipFile(subs / "amy.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("toy/toy.ipynb", nb("fine"))
        zf.writestr("04_moths/moths.ipynb", nb("amy"))
        zf.getinfo("04_moths/moths.ipynb").CRC ^= 1
    result = run(tmp_path)
    assert_only_amy_flagged(result, "Bad CRC")
    assert not (result.folder / "amy").exists()
    assert ("amy", "toy") not in result.taken


def test_header_that_understates_the_size_is_caught_while_reading(tmp_path, subs):
    class_of_three(subs)
    with zipfile.ZipFile(subs / "amy.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("04_moths/moths.ipynb", bytes(1000) + nb("amy"))
        [zi] = zf.infolist()
        zi.file_size = 100
    result = run(tmp_path)
    assert_only_amy_flagged(result, "could not be read")
    assert not (result.folder / "amy").exists()


class Endless(io.RawIOBase):
    """A member whose data never ends, as if its header lied."""

    def readable(self):
        return True

    def readinto(self, buffer):
        buffer[:] = bytes(len(buffer))
        return len(buffer)


@pytest.mark.parametrize(
    ("declared", "budget", "words"),
    [(1000, collect.MAX_TOTAL, "(1,000)"), (collect.MAX_MEMBER * 2, 5000, "(5,000)")],
)
def test_reading_is_capped_whatever_the_data(declared, budget, words):
    out = io.BytesIO()
    with pytest.raises(collect._Refused, match=re.escape(words)):
        copy_capped(io.BufferedReader(Endless()), out, declared, budget)
    assert len(out.getvalue()) <= 5000


def test_reading_short_of_the_header_is_refused():
    with pytest.raises(collect._Refused, match="declares 10"):
        copy_capped(io.BytesIO(b"12345"), io.BytesIO(), 10, collect.MAX_TOTAL)


def test_reading_exactly_the_header_is_copied():
    out = io.BytesIO()
    assert copy_capped(io.BytesIO(b"1234567890"), out, 10, collect.MAX_TOTAL) == 10
    assert out.getvalue() == b"1234567890"


def test_corrupted_archives_never_raise_nor_write_outside_dest(tmp_path, subs):
    """Random damage to a valid zip: every outcome is a collected or a flagged student."""
    good = make_zip(
        tmp_path / "good.zip", {"04_moths/moths.ipynb": nb("amy") * 20, "toy.ipynb": nb("t")}
    ).read_bytes()
    rng = random.Random(20240611)
    for round_ in range(40):
        data = bytearray(good)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        (subs / f"s{round_}.zip").write_bytes(bytes(data))
    make_zip(subs / "ben.zip", {"04_moths/moths.ipynb": nb("ben")})
    result = run(tmp_path)
    assert tag(result, "ben", "04_moths", "moths") == "ben"
    for path in files(tmp_path):
        assert path.startswith(("subs/", "out/.collected/", "good.zip")), path
    for who in students(result):
        assert who == "ben" or who.startswith("s")
    for i in range(40):
        assert f"s{i}" in students(result) or f"s{i}" in result.problems


def test_a_bad_archive_between_good_ones_stops_nobody(tmp_path, subs):
    """The row of issue 14: one member ``04_moths/ ..`` used to stop the whole run."""
    for who in ("amy", "ben", "dan"):
        make_zip(subs / f"{who}.zip", {"04_moths/moths.ipynb": nb(who)})
    make_zip(subs / "cat.zip", [(info("04_moths/ .."), b""), ("04_moths/moths.ipynb", nb("c"))])
    (subs / "eve.zip").write_bytes(b"PK\x03\x04 nope")
    result = run(tmp_path)
    assert students(result) == {"amy", "ben", "dan"}
    assert set(result.problems) == {"cat", "eve"}


def test_bomb_in_a_bulk_download_costs_only_its_student(tmp_path, subs):
    others = {"amy_moths.ipynb": nb("amy"), "ben/moths.ipynb": nb("ben")}
    zero_bomb(subs / "04_moths.zip", 1024 * collect.MiB, "carl_moths.ipynb", others)
    result = run(tmp_path)
    assert students(result) == {"amy", "ben"}
    assert list(result.problems) == ["carl"]
    assert "limit 50 MiB" in result.problems["carl"][0]


def test_bulk_download_over_the_total_limit_is_noted_under_its_name(tmp_path, subs):
    lie_about_sizes(
        subs / "04_moths.zip", {f"s{i}_moths.ipynb": 45 * collect.MiB for i in range(5)}
    )
    make_zip(subs / "amy.zip", {"toy.ipynb": nb("amy")})
    result = run(tmp_path)
    assert students(result) == {"amy"}
    assert list(result.problems) == ["04_moths.zip"]
    assert "limit 200 MiB" in result.problems["04_moths.zip"][0]


def test_archive_file_too_large_is_not_opened(tmp_path, subs, monkeypatch):
    class_of_three(subs)
    make_zip(subs / "amy.zip", {"04_moths/moths.ipynb": random.Random(1).randbytes(50_000)})
    monkeypatch.setattr(collect, "MAX_ARCHIVE", 10_000)
    assert_only_amy_flagged(run(tmp_path), "(limit 10,000 bytes)")
