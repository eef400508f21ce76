"""The model answers through every check before a release: a course never ships a task whose own
solution fails. `model_problems` runs a source notebook's visible tests in a kernel and its
hidden checks through the very re-check that grades students (`grading.recheck`, unsandboxed:
the code is the course's); each problem names the part and the check's message.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import NoSuchKernel
from nbclient import NotebookClient

from grading.cells import grade_id, is_test, release_modules
from grading.course import SOLUTIONS, tool_env
from grading.recheck import recheck_notebook
from grading.scan import proven

#: Seconds one cell of a model answer may run (the slowest honest cell takes a few).
CELL_SECONDS = 300


def _failure(cell) -> str | None:
    """Why a cell of the executed notebook failed (an exception, or output on stderr)."""
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            return f"{out.get('ename')}: {' '.join(str(out.get('evalue')).split())[:400]}"
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream" and out.get("name") == "stderr":
            return "wrote to stderr: " + " ".join(str(out.get("text", "")).split())[:300]
    return None


def visible_problems(nb: nbformat.NotebookNode, workdir: Path) -> list[str]:
    """The notebook's cells run in order in a fresh kernel: the cells that failed, in words."""
    nb = nbformat.from_dict(nb)
    client = NotebookClient(
        nb,
        timeout=CELL_SECONDS,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(workdir)}},
    )
    try:
        client.execute(env=tool_env(), cwd=str(workdir))
    except NoSuchKernel:
        raise RuntimeError(
            "the model answers run in the Jupyter kernel 'python3', which is not installed: "
            "python -m ipykernel install --sys-prefix --name python3 (make instructor does it)"
        ) from None
    problems = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        why = _failure(cell)
        if why is None:
            continue
        name = grade_id(cell) or f"cell {index + 1}"
        what = "visible test" if is_test(cell) else "cell"
        problems.append(f"{name}: {what} failed: {why}")
    return problems


def hidden_problems(notebook: Path, assignment: str, workdir: Path) -> list[str]:
    """The notebook re-checked as a submission: every check that does not pass, in words."""
    recheck = recheck_notebook(notebook, notebook, assignment, workdir / "recheck")
    problems = [
        f"{gid}: hidden check failed: {verdict.get('message') or verdict['status']}"
        for gid, verdict in recheck["verdicts"].items()
        if not verdict["passed"]
    ]
    problems += [
        f"{name}: the re-check's run of this cell failed: {problem}"[:500]
        for name, problem in recheck.get("cell_problems", {}).items()
    ]
    problems += [
        f"{name}: the grader would flag this code: {'; '.join(f for f in found if proven(f))}"
        for name, found in recheck.get("findings", {}).items()
        if any(proven(f) for f in found)
    ]
    return problems


def model_problems(nb: nbformat.NotebookNode, assignment: str) -> list[str]:
    """Every visible test and hidden check the model answer ``nb`` fails (empty: it passes).

    The helper modules beside the source notebook (solutions/<assignment>/*.py) sit beside it
    in both runs, as they do in the release."""
    modules = release_modules(SOLUTIONS / assignment)
    with tempfile.TemporaryDirectory(prefix=f"gmm-model-{assignment}-") as tmp:
        work = Path(tmp)
        path = work / f"{assignment}.ipynb"
        nbformat.write(nb, path)
        (work / "run").mkdir()
        for folder in (work, work / "run"):
            for name, source in modules.items():
                (folder / f"{name}.py").write_text(source)
        return visible_problems(nb, work / "run") + hidden_problems(path, assignment, work)
