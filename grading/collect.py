"""Intake: a folder of untrusted uploads in, one copy per student out, and a list of problems.

The grader may run as root and the uploads are hostile data, so nothing in them is trusted:
only regular files with one link are taken (a hard link from an unpacked tar would grade bob's
notebook as alice's), links are never followed and each file is checked again on its open
descriptor (``O_NOFOLLOW | O_NONBLOCK``); sizes are capped (`FILE_BYTES`, `STUDENT_BYTES`,
`STUDENT_ENTRIES`); a notebook must be JSON nested at most `MAX_DEPTH` deep (checked before
any parser recurses), nbformat 4 and schema-valid, or it is "unreadable"; file names of any
bytes are shown printably (`shown`). Whatever goes wrong in one folder is a `Problem` of that
student, never the class's. The layouts read are `LAYOUTS`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import time
from pathlib import Path
from typing import NamedTuple

import nbformat

from grading.course import ASSIGNMENTS
from grading.layout import Course, printable

#: Largest notebook taken (a notebook with a few figures is well under 5 MB).
FILE_BYTES = 20 * 1024**2
#: Largest total of one student's notebooks.
STUDENT_BYTES = 60 * 1024**2
#: Most files and folders looked at in one student's folder.
STUDENT_ENTRIES = 5_000
#: Deepest JSON nesting taken (a notebook needs ~8; json and nbformat recurse per level).
MAX_DEPTH = 100
STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$")


class Problem(NamedTuple):
    """Something wrong in one student's upload; ``assignment`` is "" for the whole folder.

    ``status``: the status of that student's row ("missing", or "unreadable" for a notebook
    that was there but could not be read)."""

    student: str
    assignment: str
    reason: str
    status: str = "missing"


def shown(name) -> str:
    """A file name of any bytes (str with surrogate escapes, or bytes) as printable text."""
    raw = os.fsencode(name)
    text = printable(raw.decode("utf-8", "backslashreplace"))
    return text.replace("\n", "\\n").replace("\t", "\\t")


class UnfitError(ValueError):
    """A candidate notebook that is not taken; the message says why, as the review list shows."""

    def __init__(self, message: str, status: str = "missing"):
        super().__init__(message)
        self.status = status


#: What an entry that is not a regular file is, in the review list's words.
_KINDS = {stat.S_IFLNK: "a link", stat.S_IFDIR: "a folder", stat.S_IFIFO: "a FIFO"}
_KINDS |= {stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a device", stat.S_IFBLK: "a device"}


def check_entry(st: os.stat_result) -> None:
    """Raise `UnfitError` unless ``st`` (an lstat) is a regular file with one link, small enough."""
    if not stat.S_ISREG(st.st_mode):
        raise UnfitError(f"is {_KINDS.get(stat.S_IFMT(st.st_mode), 'not a regular file')}")
    if st.st_nlink != 1:
        raise UnfitError(f"is a hard link ({st.st_nlink} names for one file)")
    if st.st_size > FILE_BYTES:
        raise UnfitError(f"is too large ({st.st_size / 1024**2:.1f} MB > {FILE_BYTES >> 20} MB)")


def read_upload(path: Path) -> bytes:
    """The bytes of an uploaded file, checked on the open descriptor (no link followed, no
    FIFO waited on, nothing past `FILE_BYTES` read)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as error:
        raise UnfitError(f"cannot be opened ({error.strerror})") from None
    try:
        check_entry(os.fstat(fd))
        chunks, size = [], 0
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
            size += len(chunk)
            if size > FILE_BYTES:
                raise UnfitError(f"is too large (> {FILE_BYTES >> 20} MB)")
        return b"".join(chunks)
    finally:
        os.close(fd)


_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


def json_depth(data: bytes) -> int:
    """How deep the arrays and objects of a JSON text nest, found without recursion."""
    brackets = _STRINGS.sub(b"", data).translate(None, delete=bytes(set(range(256)) - set(b"[]{}")))
    depth = deepest = 0
    for byte in brackets:
        depth += 1 if byte in b"[{" else -1
        deepest = max(deepest, depth)
    return deepest


def check_notebook(data: bytes) -> None:
    """Raise `UnfitError` (status "unreadable") unless ``data`` is a readable nbformat 4
    notebook."""
    if json_depth(data) > MAX_DEPTH:
        raise UnfitError(f"is unreadable (JSON nested deeper than {MAX_DEPTH})", "unreadable")
    try:
        content = json.loads(data)
    except (ValueError, RecursionError) as error:
        raise UnfitError(f"is unreadable (not JSON: {error})"[:200], "unreadable") from None
    version = content.get("nbformat") if isinstance(content, dict) else None
    if version != 4:
        raise UnfitError(
            f"is unreadable (nbformat {printable(str(version))[:20]}; save it as version 4)",
            "unreadable",
        )
    try:
        nbformat.validate(nbformat.from_dict(content))
    except (nbformat.ValidationError, RecursionError, TypeError, ValueError) as error:
        first = printable(str(error).splitlines()[0] if str(error) else type(error).__name__)
        why = f"is unreadable (not a valid notebook: {first[:120]})"
        raise UnfitError(why, "unreadable") from None


class Upload:
    """One student's folder, walked once without following links (`STUDENT_ENTRIES` at most)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.entries: dict[tuple[str, ...], os.stat_result] = {}
        self.overfull = False
        pending = [()]
        while pending:
            rel = pending.pop()
            try:
                names = os.listdir(folder.joinpath(*rel))
            except OSError:
                continue
            for name in sorted(names):
                if len(self.entries) >= STUDENT_ENTRIES:
                    self.overfull = True
                    return
                try:
                    st = os.lstat(folder.joinpath(*rel, name))
                except OSError:  # a name too long to reach: nothing of it is taken
                    continue
                self.entries[(*rel, name)] = st
                if stat.S_ISDIR(st.st_mode):
                    pending.append((*rel, name))

    def notebooks(self, under: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
        """Entries named ``*.ipynb`` (of any type) under ``under``, sorted."""
        n = len(under)
        return sorted(
            rel
            for rel in self.entries
            if rel[:n] == under and rel[-1].endswith(".ipynb") and len(rel) > n
        )

    def pick(self, assignment: str) -> tuple[tuple[str, ...] | None, list[tuple[str, ...]]]:
        """(the notebook to grade for ``assignment`` or None, the notebooks it could be)."""
        notebook = ASSIGNMENTS[assignment]
        for rel in [(assignment, notebook), (notebook,)]:
            if rel in self.entries:
                return rel, [rel]
        nested = [rel for rel in self.notebooks((assignment,)) if len(rel) == 2]
        return (nested[0] if len(nested) == 1 else None), nested


#: The upload layouts `collect` understands (printed when it finds no student).
LAYOUTS = """\
  <student>/<assignment>/<notebook>  nbgrader's (alice/em_by_hand/em_by_hand.ipynb)
  <student>/<notebook>               a folder per student (alice/em_by_hand.ipynb)
  <student>_<notebook>               flat, as an LMS exports (alice_em_by_hand.ipynb)
  <student>_<id>_<id>_<notebook>     flat, Canvas's names (alice_12345_67890_em_by_hand.ipynb)
with <notebook> one of """ + ", ".join(ASSIGNMENTS.values())

#: ``<student>[_LATE]_<user id>_<submission id>``: the prefix of a Canvas download's file name.
_CANVAS = re.compile(r"^(?P<student>.+?)(?:_LATE)?_\d+_\d+$")


def flat_name(name: str, assignments) -> tuple[str, str] | None:
    """(student, assignment) of a flat upload named ``<student>_<notebook>`` (optionally
    ``<student>_<id>_<id>_<notebook>``, Canvas's, or ending ``-<n>.ipynb``, a resubmission, as
    nbgrader's ``zip_collect`` examples read them); None for any other name."""
    for assignment in assignments:
        stem = Path(ASSIGNMENTS[assignment]).stem
        match = re.match(rf"^(?P<prefix>.+)_{re.escape(stem)}(?:-\d+)?\.ipynb$", name)
        if match:
            prefix = match["prefix"]
            canvas = _CANVAS.match(prefix)
            return (canvas["student"] if canvas else prefix), assignment
    return None


def collect(
    submissions: Path, work: Path, assignments=tuple(ASSIGNMENTS), keep=frozenset()
) -> tuple[dict, list[Problem]]:
    """{student: {assignment: path or None}} copied into ``work``; and the problems found.

    The folders of the students in ``keep`` (graded already: ``--resume``) are left as they are.
    """
    submissions = Path(submissions)
    students, problems, flat = {}, [], {}
    for name in sorted(os.listdir(submissions)):
        path = submissions / name
        try:
            st = os.lstat(path)
        except OSError:  # gone since the listing, or a name too long to reach
            problems.append(Problem(shown(name), "", "could not be looked at: skipped"))
            continue
        if stat.S_ISLNK(st.st_mode):
            if path.is_dir():
                problems.append(Problem(shown(name), "", "the student's folder is a link: skipped"))
            elif name.endswith(".ipynb"):
                problems.append(Problem(shown(name), "", "a link, not a notebook: skipped"))
            continue
        if stat.S_ISDIR(st.st_mode):
            if not STUDENT_ID.match(name):
                why = "folder name is not a usable student id: skipped"
                problems.append(Problem(shown(name), "", why))
                continue
            students[name], taken, mine = _from_folder(Upload(path), name, assignments)
        elif name.endswith(".ipynb"):
            owner = flat_name(name, assignments)
            if owner is None or not STUDENT_ID.match(owner[0]):
                why = "a notebook whose name gives no student and assignment: skipped"
                problems.append(Problem(shown(name), "", why))
            else:
                flat.setdefault(owner[0], {}).setdefault(owner[1], []).append((path, st))
            continue
        else:
            continue
        problems += mine
        if name not in keep:
            _copy(work, name, taken)
    for student, uploads in sorted(flat.items()):
        if student in students:
            for found in uploads.values():
                for path, _ in found:
                    why = f"{shown(path.name)} beside the folder {student}/: not graded"
                    problems.append(Problem(student, "", why))
            continue
        mine, chosen = [], {}
        for assignment in assignments:
            found = uploads.get(assignment, [])
            if len(found) > 1:
                names = ", ".join(shown(p.name) for p, _ in found)
                mine.append(
                    Problem(student, assignment, f"several notebooks ({names}): not graded")
                )
            elif found:
                chosen[assignment] = (found[0][0], found[0][1], shown(found[0][0].name))
        students[student], taken = _take({a: chosen.get(a) for a in assignments}, student, mine)
        problems += mine
        if student not in keep:
            _copy(work, student, taken)
    return students, problems


def _from_folder(upload: Upload, student: str, assignments) -> tuple[dict, dict, list]:
    """A student's folder: ({assignment: path or None}, what `_take` took, problems)."""
    if upload.overfull:
        why = f"the folder holds more than {STUDENT_ENTRIES} files: skipped"
        return dict.fromkeys(assignments), {}, [Problem(student, "", why)]
    chosen, problems = _choose(upload, student, assignments)
    found, taken = _take(chosen, student, problems)
    if not any(found.values()) and not any(p.assignment for p in problems):
        there = [shown("/".join(rel)) for rel in upload.notebooks()]
        why = f"found only {', '.join(there[:5])}" if there else "the folder holds no notebook"
        problems.append(Problem(student, "", why))
    return found, taken, problems


def _choose(upload: Upload, student: str, assignments) -> tuple[dict, list[Problem]]:
    """{assignment: (path, lstat, shown name) or None} of one student's folder; problems."""
    chosen, problems = {}, []
    for assignment in assignments:
        rel, candidates = upload.pick(assignment)
        chosen[assignment] = None
        linked = upload.entries.get((assignment,))
        if rel is None and linked is not None and stat.S_ISLNK(linked.st_mode):
            problems.append(Problem(student, assignment, f"{assignment} is a link: not graded"))
        elif rel is None and len(candidates) > 1:
            why = f"several notebooks; none named {ASSIGNMENTS[assignment]}: not graded"
            problems.append(Problem(student, assignment, why))
        elif rel is not None:
            path = upload.folder.joinpath(*rel)
            chosen[assignment] = (path, upload.entries[rel], shown("/".join(rel)))
    return chosen, problems


def _take(chosen: dict, student: str, problems: list) -> tuple[dict, dict]:
    """({assignment: path or None}, {assignment: (bytes, mtime)}) of the chosen uploads that
    pass every check; each that does not is added to ``problems``."""
    found, taken, total = {}, {}, 0
    for assignment, choice in chosen.items():
        found[assignment] = None
        if choice is None:
            continue
        path, st, where = choice
        try:
            check_entry(st)
            data = read_upload(path)
            total += len(data)
            if total > STUDENT_BYTES:
                raise UnfitError(f"makes the folder too large (> {STUDENT_BYTES >> 20} MB)")
            check_notebook(data)
        except UnfitError as error:
            why = f"{where} {error}: not graded"
            problems.append(Problem(student, assignment, why, error.status))
            continue
        found[assignment] = path
        taken[assignment] = (data, st.st_mtime)
    return found, taken


def _copy(work: Path, student: str, taken: dict) -> None:
    """Write the taken notebooks into ``work/<student>``, nbgrader's submitted layout."""
    root = work / student
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    for assignment, (data, mtime) in taken.items():
        dest = Course(root).notebook("submitted", assignment, student)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
        (dest.parent / "timestamp.txt").write_text(
            time.strftime("%Y-%m-%d %H:%M:%S.000000 UTC", time.gmtime(mtime))
        )
