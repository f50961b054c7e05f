"""Collect zip submissions into ``dest/<student>/<assignment>/<notebook>.ipynb``, safely.

A zip in the submissions folder is one of two kinds:

* **A student's own archive** (``amy.zip``, ``jo@uni.zip``, ``[x].zip``): the student is the
  archive's own name without ``.zip``, exactly as it is, and never a path inside it. Each
  known notebook is found by its file name (``<nb>.ipynb``) at any depth; its assignment is
  the deepest folder on its path named after a known assignment that has that notebook
  (``course/04_moths/moths.ipynb``, ``carl/04_moths/moths.ipynb`` in ``zoe.zip`` is zoe's),
  else the one assignment that has a notebook of that name (``moths.ipynb`` alone). If one
  notebook appears twice, the shallowest path is taken (ties: the first by name) and the
  duplicate is noted.
* **A bulk download** named after a known assignment (``04_moths.zip``), as learning-management
  systems give one assignment: ``<student>_<anything>_<nb>.ipynb`` or ``<student>_<nb>.ipynb``
  (the student is the text before the first ``_``), or ``<student>/<nb>.ipynb``. A notebook
  that names no student, or is in another form, is noted under the archive's file name; two
  files for one student's notebook are noted and neither is taken.

Every member of an archive is checked before anything is read (:func:`member_problem`):

* its name, with backslashes read as ``/`` and whitespace stripped around each component, is
  not absolute (``/x``, ``C:x``) and has no ``..`` component (``04_moths/ ..`` and
  `` ../04_moths/moths.ipynb`` are traversal attempts);
* it is a regular file or a directory: no symlink or other special file (the Unix mode in
  ``external_attr``), no directory posing as a file (a file whose name ends in an empty or
  ``.`` component, a file with a directory's mode, a path that is both a file and a folder,
  a directory entry with contents);
* it is not encrypted, and is stored or deflated (bzip2 and LZMA are refused: zipfile cannot
  cap how much one of their reads inflates to);
* its uncompressed size is at most :data:`MAX_MEMBER` (50 MiB), the archive's total (of the members
  not refused already, so that one bomb in a bulk download costs only its student) at most
  :data:`MAX_TOTAL` (200 MiB), its compression ratio at most :data:`MAX_RATIO` (200, checked
  for members over :data:`RATIO_FLOOR`, 1 MiB: below that no ratio can do harm), and the
  archive has at most :data:`MAX_MEMBERS` (1,000) members.

The sizes come from the central directory and are enforced again while reading, in case it
lies. Nothing is extracted by zipfile: only members that are known notebooks are read, in
chunks, with those caps, and written by this module to paths it builds itself from the
student's name and the course's assignment and notebook names, always under ``dest``.

A bad archive (not a zip, truncated, bad CRC, a member breaking a rule) flags one student:
``problems[student]`` says which file and which rule, and nothing is taken from it; the rest
of the class is collected. In a bulk archive a bad member flags the student it names (or the
archive, by its file name, if it names none) and only that student's files are left out.
A file that breaks nothing but cannot be placed is noted the same way.

**Identity.** Student names are stored exactly. A name that cannot be a folder name (empty,
``.``, ``..``, starting with ``.``, containing ``/`` or NUL) is refused with a note under the
archive's file name. Two archives that map to the same student are an error, never a silent
overwrite: two own archives of one name (``amy.zip`` and ``amy.ZIP``) are both left out, and
when two archives give one student the same assignment (``04_moths.zip`` naming amy and
``amy.zip`` holding ``04_moths``) that assignment is taken from neither; both are noted.
:func:`collect_zips` never raises for a bad archive and never writes outside ``dest``.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

MiB = 1024 * 1024
MAX_MEMBER = 50 * MiB
"""Largest uncompressed size of one member."""
MAX_TOTAL = 200 * MiB
"""Largest uncompressed size of all the members of one archive."""
MAX_RATIO = 200
"""Largest ratio of uncompressed to compressed size of one member."""
RATIO_FLOOR = 1 * MiB
"""Members no larger than this are not held to :data:`MAX_RATIO`."""
MAX_MEMBERS = 1000
"""Most members one archive may have."""
MAX_ARCHIVE = MAX_TOTAL + 16 * MiB
"""Largest archive file read at all (members within the limits cannot need more)."""
CHUNK = 1 * MiB
"""How much is read from a member at a time."""

_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass
class Collected:
    """What :func:`collect_zips` collected.

    Attributes
    ----------
    folder : Path
        The folder holding ``<student>/<assignment>/<notebook>.ipynb``.
    problems : dict[str, list[str]]
        Student (or, when no student can be named, archive file name) to human-readable notes;
        each one means that student's rows are to be flagged ``unreadable``.
    taken : dict[tuple[str, str], str]
        ``(student, assignment)`` to the archive and members taken, e.g.
        ``"amy.zip:course/04_moths/moths.ipynb"``, for the log.
    """

    folder: Path
    problems: dict[str, list[str]] = field(default_factory=dict)
    taken: dict[tuple[str, str], str] = field(default_factory=dict)


class _Refused(Exception):
    """A member broke a rule while it was being read."""


@dataclass
class _Pick:
    """One member chosen to become ``dest/student/assignment/nb.ipynb``."""

    student: str
    assignment: str
    nb: str
    info: zipfile.ZipInfo


@dataclass
class _Plan:
    """What one archive offers, decided from its central directory alone."""

    archive: Path
    bulk: bool
    picks: list[_Pick] = field(default_factory=list)
    bad: set[str] = field(default_factory=set)  # students nothing is taken for


# --- Names -----------------------------------------------------------------------------------


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a student's folder name, or None if it can.

    Parameters
    ----------
    name : str
        A student's name, exactly as found.

    Returns
    -------
    str or None
        A short reason (empty, ``.``/``..``, starts with ``.``, contains ``/`` or NUL).
    """
    if not name:
        return "an empty name"
    if name in (".", ".."):
        return f"the name {name!r} is not a folder name"
    if name.startswith("."):
        return f"the name {name!r} starts with '.'"
    if "/" in name or "\0" in name:
        return f"the name {name!r} contains '/' or NUL"
    return None


def _parts(filename: str) -> list[str]:
    """A member's path components: backslashes read as ``/``, whitespace stripped around each."""
    return [p.strip() for p in filename.replace("\\", "/").split("/")]


def _clean(filename: str) -> list[str]:
    """The components that name something (no empty or ``.`` ones)."""
    return [p for p in _parts(filename) if p not in ("", ".")]


def _is_dir(info: zipfile.ZipInfo) -> bool:
    """A directory entry: its name ends in ``/`` (or ``\\``)."""
    return info.filename.replace("\\", "/").endswith("/")


def _stem(archive: Path) -> str:
    """An archive's name without its ``.zip`` (any case), exactly: ``.zip`` gives ``""``."""
    return archive.name[: -len(".zip")]


def _hidden(parts: list[str]) -> bool:
    """Under a hidden folder, a hidden file, or macOS's ``__MACOSX``: never a submission."""
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


# --- Checking members ------------------------------------------------------------------------


def member_problem(info: zipfile.ZipInfo) -> str | None:
    """Which rule a member breaks on its own, from its central-directory entry, or None.

    Parameters
    ----------
    info : zipfile.ZipInfo
        The member.

    Returns
    -------
    str or None
        The rule it breaks, in words.
    """
    raw = info.filename
    parts = _parts(raw)
    slashed = raw.replace("\\", "/")
    if slashed.lstrip().startswith("/") or _DRIVE.match(parts[0]):
        return "an absolute path"
    if "\0" in raw:
        return "a NUL in its name"
    if ".." in parts:
        return "a '..' component (path traversal)"
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if kind == stat.S_IFLNK:
        return "a symbolic link"
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        return "not a regular file"
    if _is_dir(info):
        if info.file_size:
            return "a directory entry with contents"
    elif parts[-1] in ("", ".") or kind == stat.S_IFDIR or info.external_attr & 0x10:
        return "a directory posing as a file"
    if info.flag_bits & 0x41:
        return "encrypted"
    if info.compress_type not in _METHODS:
        return f"compression method {info.compress_type} (only stored or deflated is read)"
    if info.file_size > MAX_MEMBER:
        return f"{info.file_size:,} bytes uncompressed (limit {MAX_MEMBER // MiB} MiB)"
    if info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * info.compress_size:
        ratio = info.file_size / max(info.compress_size, 1)
        return f"a compression ratio of {ratio:,.0f} (limit {MAX_RATIO})"
    return None


def archive_problem(infos: list[zipfile.ZipInfo]) -> str | None:
    """Which rule an archive's members break together (count, total size, file vs folder).

    Parameters
    ----------
    infos : list of zipfile.ZipInfo
        All the archive's members.

    Returns
    -------
    str or None
        The rule broken, in words.
    """
    if len(infos) > MAX_MEMBERS:
        return f"{len(infos):,} members (limit {MAX_MEMBERS:,})"
    total = sum(i.file_size for i in infos)
    if total > MAX_TOTAL:
        return f"{total:,} bytes uncompressed in all (limit {MAX_TOTAL // MiB} MiB)"
    return None


def _file_and_folder(infos: list[zipfile.ZipInfo]) -> dict[int, str]:
    """Members whose path is a file and also a folder of another member."""
    folders = set()
    for info in infos:
        parts = _clean(info.filename)
        end = len(parts) if _is_dir(info) else len(parts) - 1
        folders.update("/".join(parts[:k]) for k in range(1, end + 1))
    return {
        i: "a path that is both a file and a folder (a directory posing as a file)"
        for i, info in enumerate(infos)
        if not _is_dir(info) and "/".join(_clean(info.filename)) in folders
    }


# --- Planning --------------------------------------------------------------------------------


def _note(problems, who: str, text: str) -> None:
    problems[who].append(text)


def _plan_own(archive, student, infos, known, owners, problems) -> _Plan:
    """A student's own archive: every known notebook in it, whatever folders it is under."""
    plan = _Plan(archive, bulk=False)
    found: dict[tuple[str, str], list[tuple[int, str, int]]] = defaultdict(list)
    for index, info in enumerate(infos):
        parts = _clean(info.filename)
        if _is_dir(info) or not parts or _hidden(parts) or not parts[-1].endswith(".ipynb"):
            continue
        nb = parts[-1][: -len(".ipynb")]
        if nb not in owners:
            continue
        folders = [p for p in parts[:-1] if p in known and nb in known[p]]
        if folders:
            assignment = folders[-1]
        elif len(owners[nb]) == 1:
            assignment = owners[nb][0]
        else:
            which = ", ".join(owners[nb])
            _note(
                problems,
                student,
                f"{archive.name}: {info.filename!r} is a notebook of several assignments "
                f"({which}) and is in no folder named after one; not taken",
            )
            continue
        found[assignment, nb].append((len(parts), "/".join(parts), index))
    for (assignment, nb), where in sorted(found.items()):
        where.sort()
        info = infos[where[0][2]]
        plan.picks.append(_Pick(student, assignment, nb, info))
        if len(where) > 1:
            others = ", ".join(repr(infos[w[2]].filename) for w in where[1:])
            _note(
                problems,
                student,
                f"{archive.name}: {nb}.ipynb appears {len(where)} times; took the shallowest, "
                f"{info.filename!r}, and ignored {others}",
            )
    if not plan.picks and not problems.get(student):
        names = sorted({f"{nb}.ipynb" for nbs in known.values() for nb in nbs})
        _note(problems, student, f"{archive.name}: holds none of {', '.join(names)}")
    return plan


def _bulk_owner(parts: list[str], nbs: list[str]) -> tuple[str | None, str | None]:
    """``(student, notebook)`` a bulk-download member names (either may be None)."""
    if len(parts) == 2:
        student = parts[0]
        nb = parts[1][: -len(".ipynb")] if parts[1].endswith(".ipynb") else None
        return student, (nb if nb in nbs else None)
    if len(parts) == 1:
        name = parts[0]
        for nb in sorted(nbs, key=len, reverse=True):
            suffix = f"_{nb}.ipynb"
            if name.endswith(suffix) and len(name) > len(suffix):
                return name[: -len(suffix)].partition("_")[0], nb
        return (name.partition("_")[0] if "_" in name else None), None
    return None, None


def _plan_bulk(archive, assignment, infos, known, problems, bad_members) -> _Plan:
    """A bulk download of one assignment: many students' files, named by the LMS."""
    plan = _Plan(archive, bulk=True)
    nbs = known[assignment]
    found: dict[tuple[str, str], list[zipfile.ZipInfo]] = defaultdict(list)
    for index, info in enumerate(infos):
        parts = _clean(info.filename)
        student, nb = _bulk_owner(parts, nbs)
        if student is not None and name_problem(student):
            student = None
        if index in bad_members:
            who = student if student is not None else archive.name
            _note(
                problems,
                who,
                f"{archive.name}: member {info.filename!r} refused: {bad_members[index]}; "
                + ("nothing of this student's taken from it" if student else "not read"),
            )
            if student is not None:
                plan.bad.add(student)
            continue
        if _is_dir(info) or not parts or _hidden(parts) or not parts[-1].endswith(".ipynb"):
            continue
        named = any(parts[-1] == f"{n}.ipynb" or parts[-1].endswith(f"_{n}.ipynb") for n in nbs)
        if not named:
            continue
        if student is None or nb is None:
            _note(
                problems,
                archive.name,
                f"{archive.name}: cannot tell whose {info.filename!r} is (expected "
                f"<student>_..._<nb>.ipynb or <student>/<nb>.ipynb); not taken",
            )
            continue
        found[student, nb].append(info)
    for (student, nb), infos_ in sorted(found.items()):
        if len(infos_) > 1:
            names = ", ".join(repr(i.filename) for i in infos_)
            _note(
                problems,
                student,
                f"{archive.name}: {len(infos_)} files for {student}'s {nb}.ipynb ({names}); "
                "none taken",
            )
            plan.bad.add(student)
        else:
            plan.picks.append(_Pick(student, assignment, nb, infos_[0]))
    plan.picks = [p for p in plan.picks if p.student not in plan.bad]
    return plan


def _plan(archive, known, owners, problems) -> _Plan | None:
    """Read an archive's central directory and decide what to take from it, or None."""
    bulk = _stem(archive) in known
    label = archive.name if bulk else _stem(archive)
    try:
        size = archive.stat().st_size
        if size > MAX_ARCHIVE:
            limit = f"{MAX_ARCHIVE:,} bytes"
            _note(problems, label, f"{archive.name}: {size:,} bytes (limit {limit}); not opened")
            return None
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
    except Exception as error:  # a bad archive must never stop the class
        _note(problems, label, f"{archive.name}: not a readable zip ({_why(error)})")
        return None
    if len(infos) > MAX_MEMBERS:
        _note(problems, label, f"{archive.name}: {archive_problem(infos)}; nothing taken")
        return None
    bad = {i: why for i, info in enumerate(infos) if (why := member_problem(info))}
    bad = _file_and_folder(infos) | bad
    # A member refused on its own is not read, so it does not count towards the total: one
    # student's bomb in a bulk download must not cost the rest of the class.
    whole = archive_problem([info for i, info in enumerate(infos) if i not in bad])
    if whole:
        _note(problems, label, f"{archive.name}: {whole}; nothing taken")
        return None
    if bulk:
        return _plan_bulk(archive, _stem(archive), infos, known, problems, bad)
    if bad:
        index = min(bad)
        more = f" (and {len(bad) - 1} more bad members)" if len(bad) > 1 else ""
        _note(
            problems,
            label,
            f"{archive.name}: member {infos[index].filename!r} refused: {bad[index]}{more}; "
            "nothing taken",
        )
        return None
    return _plan_own(archive, label, infos, known, owners, problems)


def _why(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


# --- Reading and writing ---------------------------------------------------------------------


def copy_capped(src: BinaryIO, out: BinaryIO, declared: int, budget: int) -> int:
    """Copy a member's data in chunks, refusing more than its header declared or the budget.

    Parameters
    ----------
    src : binary file
        The open member (``ZipFile.open``).
    out : binary file
        Where the data goes.
    declared : int
        The uncompressed size its central-directory entry gives.
    budget : int
        How many bytes this archive may still produce.

    Returns
    -------
    int
        The bytes copied.

    Raises
    ------
    _Refused
        When the data outgrows ``declared``, :data:`MAX_MEMBER` or ``budget``, or falls short
        of ``declared``.
    """
    limit = min(declared, MAX_MEMBER, budget)
    copied = 0
    while chunk := src.read(min(CHUNK, limit - copied + 1)):
        copied += len(chunk)
        if copied > limit:
            raise _Refused(f"more data than its header declares or the limits allow ({limit:,})")
        out.write(chunk)
    if copied != declared:
        raise _Refused(f"{copied:,} bytes where its header declares {declared:,}")
    return copied


def _write(zf: zipfile.ZipFile, pick: _Pick, dest: Path, budget: int) -> tuple[Path, int]:
    """Write one chosen member to ``dest/student/assignment/nb.ipynb``; its path and size."""
    folder = dest
    for part in (pick.student, pick.assignment):
        folder = folder / part
        folder.mkdir(exist_ok=True)
        if folder.is_symlink() or not folder.is_dir():
            raise _Refused(f"{folder} is not a plain folder")
    target = folder / f"{pick.nb}.ipynb"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(target, flags, 0o644)
    except FileExistsError:
        raise _Refused(
            f"{target.relative_to(dest)} was already written (a name collision)"
        ) from None
    try:
        with os.fdopen(fd, "wb") as out, zf.open(pick.info) as src:
            size = copy_capped(src, out, pick.info.file_size, budget)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target, size


def _take(plan: _Plan, dest: Path, problems, taken) -> None:
    """Read and write an archive's picks; a failure leaves that student's files out."""
    picks: dict[str, list[_Pick]] = defaultdict(list)
    for pick in plan.picks:
        picks[pick.student].append(pick)
    if not picks:
        return
    budget = MAX_TOTAL
    try:
        zf = zipfile.ZipFile(plan.archive)
    except Exception as error:
        for student in picks:
            _note(problems, student, f"{plan.archive.name}: not a readable zip ({_why(error)})")
        return
    with zf:
        for student, mine in picks.items():
            written: list[Path] = []
            try:
                for pick in mine:
                    path, size = _write(zf, pick, dest, budget)
                    written.append(path)
                    budget -= size
            except Exception as error:  # bad CRC, a lying header, a collision on disk
                for path in written:
                    path.unlink(missing_ok=True)
                _prune(dest, dest / student)
                member = pick.info.filename
                _note(
                    problems,
                    student,
                    f"{plan.archive.name}: member {member!r} could not be read "
                    f"({_why(error)}); nothing of this student's taken from it",
                )
                continue
            by_assignment: dict[str, list[str]] = defaultdict(list)
            for pick in mine:
                by_assignment[pick.assignment].append(pick.info.filename)
            for assignment, members in by_assignment.items():
                taken[student, assignment] = "; ".join(f"{plan.archive.name}:{m}" for m in members)


def _prune(dest: Path, folder: Path) -> None:
    """Remove ``folder`` and its subfolders if they hold no files."""
    for sub in sorted(folder.glob("*"), reverse=True):
        if sub.is_dir() and not sub.is_symlink() and not any(sub.iterdir()):
            sub.rmdir()
    if folder != dest and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


# --- Collisions ------------------------------------------------------------------------------


def _drop_collisions(plans: list[_Plan], problems) -> None:
    """Leave out every (student, assignment) that two archives both give; note it."""
    sources: dict[tuple[str, str], list[str]] = defaultdict(list)
    for plan in plans:
        for key in sorted({(p.student, p.assignment) for p in plan.picks}):
            sources[key].append(plan.archive.name)
    clash = {key: names for key, names in sources.items() if len(names) > 1}
    for (student, assignment), names in sorted(clash.items()):
        _note(
            problems,
            student,
            f"{' and '.join(names)} both hold {student}'s {assignment}; taken from neither",
        )
    for plan in plans:
        plan.picks = [p for p in plan.picks if (p.student, p.assignment) not in clash]


# --- The entry point -------------------------------------------------------------------------


def archives(folder: Path) -> list[Path]:
    """The zips directly in ``folder`` (``.zip`` in any case), sorted by name.

    Parameters
    ----------
    folder : Path
        The submissions folder.

    Returns
    -------
    list of Path
    """
    return sorted(
        p for p in Path(folder).iterdir() if p.name.lower().endswith(".zip") and p.is_file()
    )


def collect_zips(folder: Path, dest: Path, known: dict[str, list[str]]) -> Collected:
    """Collect the zips in ``folder`` into ``dest/<student>/<assignment>/<nb>.ipynb``.

    The rules are the module's (see its docstring). ``dest`` is wiped and recreated.

    Parameters
    ----------
    folder : Path
        The submissions folder; only the zips directly in it are read.
    dest : Path
        Where to put the notebooks; wiped first.
    known : dict[str, list[str]]
        ``{assignment: [notebook stems]}``, e.g. ``{"04_moths": ["moths"]}``.

    Returns
    -------
    Collected
        The folder, the notes per student and which archive member each
        ``(student, assignment)`` came from.
    """
    folder, dest = Path(folder), Path(dest)
    if dest.is_symlink():
        dest.unlink()
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    problems: dict[str, list[str]] = defaultdict(list)
    taken: dict[tuple[str, str], str] = {}
    owners: dict[str, list[str]] = defaultdict(list)
    for assignment, nbs in sorted(known.items()):
        for nb in nbs:
            owners[nb].append(assignment)

    own: dict[str, list[Path]] = defaultdict(list)
    chosen = []
    for archive in archives(folder):
        stem = _stem(archive)
        if stem in known:
            chosen.append(archive)
        elif why := name_problem(stem):
            _note(problems, archive.name, f"{archive.name}: {why}; not a student's name")
        else:
            own[stem].append(archive)
    for stem, paths in own.items():
        if len(paths) > 1:
            names = " and ".join(p.name for p in paths)
            _note(problems, stem, f"{names} are both {stem}'s; taken from neither")
        else:
            chosen.append(paths[0])

    ready = []
    for archive in sorted(chosen):
        try:
            plan = _plan(archive, known, owners, problems)
        except Exception as error:  # never let one archive stop the class
            who = archive.name if _stem(archive) in known else _stem(archive)
            _note(problems, who, f"{archive.name}: could not be collected ({_why(error)})")
            continue
        if plan is not None:
            ready.append(plan)
    _drop_collisions(ready, problems)
    for plan in ready:
        _take(plan, dest, problems, taken)
    return Collected(
        folder=dest,
        problems={k: problems[k] for k in sorted(problems)},
        taken=dict(sorted(taken.items())),
    )
