"""Shared pytest fixtures: the built book, a local static server, headless Chromium, artefacts."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
from filelock import FileLock
from per_run import once_per_run, run_folder

try:  # pytest-xdist (the test extra): `make test` runs on every core
    from xdist.scheduler import LoadScopeScheduling
except ImportError:  # plain pytest still runs every test, in one process
    LoadScopeScheduling = None

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


#: Tests that use these fixtures need the built book (a 20-40 s build here): marked `slow`.
BOOK_FIXTURES = frozenset({"book_build", "book_html", "book_server"})
#: Tests that use these fixtures drive headless Chromium: marked `browser` (and `slow`).
BROWSER_FIXTURES = frozenset({"chromium"})


def pytest_configure(config):
    """Hypothesis, the same on every machine and every run: no per-example deadline (a loaded
    machine would turn slowness into a failure) and derandomized examples, so a failure in CI
    replays anywhere. To search new examples: pytest --hypothesis-profile=explore."""
    from hypothesis import HealthCheck, settings

    lenient = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
    settings.register_profile("repeatable", derandomize=True, **lenient)
    settings.register_profile("explore", **lenient)
    if not config.getoption("hypothesis_profile", None):
        settings.load_profile("repeatable")


#: Under pytest-xdist (`make test` runs `-n TEST_WORKERS`) a module- or session-scoped fixture is
#: built once per worker that needs it. These modules' fixtures are costly (the book's pages read
#: in Chromium, a graded class, a Dask cluster, a student venv, the explorer run under node, a
#: Jupyter server), so each module's tests go to one worker together
#: (`pytest_xdist_make_scheduler` below).
XDIST_MODULES = frozenset(
    {
        "test_book",
        "test_grading_pipeline",
        "test_grading_distributed",
        "test_student_setup",
        "test_explorer_parity",
        "test_explore_jupyter",
    }
)

#: Tests of an XDIST_MODULES module that build no costly module-scoped fixture of their own
#: (each starts its own cluster or grades students of its own; the artefacts they share, the
#: graded class included, are made once per run under a file lock): each is a unit of its own,
#: so they can run on another worker meanwhile.
ON_THEIR_OWN = frozenset(
    {
        "test_grading_distributed::test_a_tls_cluster_grades_through_the_cli",
        "test_grading_distributed::test_a_lost_scheduler_stops_the_run_and_keeps_what_was_graded",
        "test_grading_distributed::test_a_worker_with_no_shared_files_or_network_grades_a_class",
        "test_grading_pipeline::test_attackers_change_nobody_else",
    }
)

#: CPU seconds of the modules (or tests) that cost more than a few seconds, measured one module
#: at a time (`pytest tests/<module>.py -n 0` in a cgroup of its own, 2 cores; test_book
#: includes the book build, test_grading_pipeline the graded class, ~325 of its 377). The
#: scheduler hands out the costliest units first, so no costly module starts late and leaves
#: the other worker idle at the end; a test not listed counts `DEFAULT_TEST_COST`. Only the
#: order of the work depends on these numbers, never an outcome. The order this gives puts the
#: two long chains first: test_grading_pipeline's unit builds the graded class (which
#: test_grading_distributed waits for once its own cluster run is done), test_book builds the
#: book (which `BOOK_MODULES` read). The single tests below test_explorer_parity were measured
#: on 2026-12-08 (CPU of the worker and its reaped children, a full run under `-n 2`): without
#: an entry each counted 1 second and could start last, stretching the end of the run.
COSTS = {
    # 377 with test_attackers_change_nobody_else; measured when the class was 325 CPU s. Since
    # each student hands in only the notebooks their answers change it is 128 (2026-12-08): the
    # module is still the costliest, and only the order depends on these numbers.
    "test_grading_pipeline": 347,
    "test_grading_pipeline::test_attackers_change_nobody_else": 30,
    # 255 with the tests ON_THEIR_OWN (its local run: the class), before `release_once` saved
    # nbgrader generate_assignment (~8 s) in all but the first of its grading runs
    "test_grading_distributed": 135,
    "test_grading_distributed::test_a_tls_cluster_grades_through_the_cli": 20,
    "test_grading_distributed::test_a_lost_scheduler_stops_the_run_and_keeps_what_was_graded": 20,
    "test_grading_distributed::test_a_worker_with_no_shared_files_or_network_grades_a_class": 32,
    "test_book": 170,  # 63 of them the book build from nothing
    "test_student_setup": 48,
    "test_explore_jupyter": 36,
    "test_explorer_parity": 12,
    "test_grading_release::test_the_recheck_judges_as_the_spec_does_in_process": 24,
    "test_grading_release::test_committed_release_is_what_nbgrader_generates": 19,
    "test_grading_release::test_nbgrader_validate_solutions_pass_and_stubs_fail": 16,
    "test_poisson_mixture::test_nbgrader_releases_it_and_the_stubs_fail_every_visible_test": 13,
    "test_grading_attacks::test_the_kernels_runtime_folder_is_no_disk_for_the_student": 13,
    "test_grading_attacks::test_a_student_who_silences_the_audit_hook_is_still_on_review": 11,
    "test_grading_units::test_the_students_run_caps_output_and_time": 11,
    "test_grading_intake::test_no_student_found_prints_the_layouts_understood": 10,
    "test_instructor_setup::test_instructor_setup_release_check_and_wheel_run_without_node": 10,
}
DEFAULT_TEST_COST = 1.0
#: Modules whose tests read the built book: handed out after every other module, so a worker
#: never waits on the file lock while the other builds the book (test_book, which the scheduler
#: hands out early, builds it).
BOOK_MODULES = frozenset({"test_book_new_sections", "test_explorer_browser", "test_explorer_page"})
#: Tests outside test_grading_pipeline's unit that need the graded class from the start
#: (`graded_class`: the first worker that asks grades it, the others wait on its file lock):
#: handed out last too, so a worker waits on the class only when nothing else is left.
#: test_grading_pipeline's unit, handed out first, builds it; test_grading_distributed and
#: test_attackers_change_nobody_else ask for it only after their own grading.
CLASS_READERS = frozenset(
    {
        "test_statuses::test_grades_and_the_review_list_show_blank_and_broken",
        "test_explore_in_notebooks::test_the_class_is_graded_as_it_deserves",
        "test_explore_in_notebooks::test_the_feedback_shows_the_cell_and_the_note_not_an_error",
        "test_kernel_watch::test_the_kernels_events_are_on_the_review_row_and_the_reference_is_not",
    }
)


def _stem(nodeid: str) -> str:
    """The module name of a test id (``tests/test_book.py::test_x[a]`` -> ``test_book``)."""
    return Path(nodeid.split("::", 1)[0]).stem


def _name(nodeid: str) -> str:
    """Module and test of a test id, without parameters (``test_book::test_x``)."""
    return f"{_stem(nodeid)}::{nodeid.partition('::')[2].split('[', 1)[0]}"


if LoadScopeScheduling is not None:

    class _CostlyModulesTogether(LoadScopeScheduling):
        """xdist's ``--dist load``, except that each module of XDIST_MODULES is one unit of
        work (its fixtures are built once) and the units are handed out costliest first
        (`COSTS`), the tests that wait on the built book or the graded class last
        (`BOOK_MODULES`, `CLASS_READERS`).

        pytest-xdist's own way, ``xdist_group`` marks with ``--dist loadgroup``, silently stops
        grouping under pytest 9.2 (pytest-xdist issue #1386: it renames node ids, which pytest
        9.2 no longer reads), so the grouping is done by the scheduler itself.
        """

        _ordered = False

        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            if _stem(module) in XDIST_MODULES and _name(nodeid) not in ON_THEIR_OWN:
                return module
            return nodeid

        def _assign_work_unit(self, node) -> None:
            if not self._ordered:  # once, before the first unit is handed out
                self._ordered = True
                tests = Counter(_stem(nodeid) for nodeid in self.collection)

                def order(unit):
                    scope, nodeids = unit
                    stem = _stem(scope)
                    if "::" not in scope:  # a whole module (XDIST_MODULES)
                        cost = COSTS.get(stem, DEFAULT_TEST_COST * len(nodeids))
                    else:
                        share = COSTS.get(stem, DEFAULT_TEST_COST * tests[stem]) / tests[stem]
                        cost = COSTS.get(_name(scope), share)
                    return stem in BOOK_MODULES or _name(scope) in CLASS_READERS, -cost

                units = sorted(self.workqueue.items(), key=order)  # stable: ties keep order
                self.workqueue.clear()
                self.workqueue.update(units)
            super()._assign_work_unit(node)

    @pytest.hookimpl(tryfirst=True)
    def pytest_xdist_make_scheduler(config, log):
        if config.getvalue("dist") == "load":
            return _CostlyModulesTogether(config, log)
        return None


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(config, items):
    """Mark every test that needs the built book or the browser, whatever file it is in, so
    `make test-fast` (-m "not slow and not browser") leaves them out without per-test upkeep."""
    for item in items:
        needs = set(getattr(item, "fixturenames", ()))
        if needs & (BOOK_FIXTURES | BROWSER_FIXTURES):
            item.add_marker(pytest.mark.slow)
        if needs & BROWSER_FIXTURES:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Folder for test artefacts (screenshots, logs); kept after the run."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def _build_book() -> subprocess.CompletedProcess:
    jb = Path(sys.executable).with_name("jupyter-book")
    env = dict(os.environ, PATH=f"{jb.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    return subprocess.run(
        [str(jb), "build", str(BOOK), "-W", "-n", "--keep-going"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )


@pytest.fixture(scope="session")
def book_build(tmp_path_factory) -> subprocess.CompletedProcess:
    """Build the book once per test run (warnings are errors; MyST-NB's cache keeps it fast).

    Under pytest-xdist every worker that needs the book asks for this; as pytest-xdist's docs
    show, the first takes a file lock in the run's shared temporary folder and builds, and the
    others wait on the lock and read the outcome it left, so only one process ever writes
    book/_build.
    """
    if not os.environ.get("PYTEST_XDIST_WORKER"):  # a plain run: one process
        return _build_book()
    shared = run_folder(tmp_path_factory) / "book-build.json"
    with FileLock(f"{shared}.lock"):
        if shared.is_file():
            done = json.loads(shared.read_text())
            return subprocess.CompletedProcess(**done)
        build = _build_book()
        fields = ("args", "returncode", "stdout", "stderr")
        shared.write_text(json.dumps({name: getattr(build, name) for name in fields}))
        return build


@pytest.fixture(scope="session")
def host_links(tmp_path_factory):
    """A lock on this machine's network links, one for the run's workers (a file in the run's
    shared temporary folder): Chromium drops the requests it has in flight, its own loopback
    ones too (net::ERR_NETWORK_CHANGED), whenever a link or an address of its network namespace
    changes. So every browser test holds it shared while it runs (`_browsers_share_host_links`,
    the `reading` fixture of test_book), and a test that adds or removes a link of this
    namespace (test_grading_distributed's `network_namespace`) holds it alone meanwhile.
    ``host_links(exclusive=False)`` is a context manager."""
    path = run_folder(tmp_path_factory) / "host-links.lock"

    @contextlib.contextmanager
    def hold(exclusive: bool = False):
        with open(path, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    return hold


@pytest.fixture(autouse=True)
def _browsers_share_host_links(request):
    """A test marked ``browser`` runs holding `host_links` shared."""
    if request.node.get_closest_marker("browser") is None:
        yield
        return
    with request.getfixturevalue("host_links")():
        yield


#: What an instructor's machine may lack: `without_node` shadows them.
NODE_TOOLS = ("node", "npm", "npx")


def shadow_node(folder: Path) -> tuple[dict, Path]:
    """(an environment whose PATH finds first stand-ins for node, npm and npx that record any
    call in a file and fail, that file) in ``folder``."""
    shadow, calls = folder / "shadow", folder / "node-calls.txt"
    shadow.mkdir(parents=True)
    for tool in NODE_TOOLS:
        script = shadow / tool
        script.write_text(f'#!/bin/sh\necho "{tool} $*" >> "{calls}"\nexit 127\n')
        script.chmod(0o755)
    env = dict(os.environ, PATH=f"{shadow}{os.pathsep}{os.environ['PATH']}")
    for tool in NODE_TOOLS:  # the stand-ins are what a command would find
        found = subprocess.run(["sh", "-c", f"command -v {tool}"], env=env, capture_output=True)
        assert found.stdout.decode().strip() == str(shadow / tool)
    return env, calls


@pytest.fixture
def without_node(tmp_path):
    """`shadow_node` in the test's own folder."""
    return shadow_node(tmp_path)


@pytest.fixture(scope="session")
def release_check(tmp_path_factory) -> dict:
    """`python -m grading.release --check` (the generated cells, every model answer through
    its checks, nbgrader generate_assignment compared with exercises/: ~21 CPU seconds) run
    once per test run, as an instructor runs it: node, npm and npx shadowed (`shadow_node`).
    Two tests read it: exercises/ is what nbgrader generates (tests/test_grading_release.py)
    and the instructor's release needs no node (tests/test_instructor_setup.py).
    {"returncode", "stdout", "stderr", "node_calls" (what the stand-ins recorded)}."""

    def build(folder: Path) -> None:
        env, calls = shadow_node(folder)
        proc = subprocess.run(
            [sys.executable, "-m", "grading.release", "--check"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,  # only stops a hung run
        )
        record = {name: getattr(proc, name) for name in ("returncode", "stdout", "stderr")}
        record["node_calls"] = calls.read_text() if calls.exists() else ""
        (folder / "release-check.json").write_text(json.dumps(record))

    folder = once_per_run(tmp_path_factory, "release-check", build, "release-check.json")
    return json.loads((folder / "release-check.json").read_text())


@pytest.fixture(scope="module")
def release_once(tmp_path_factory):
    """For the module that asks: grade_folder's first step, `grading.release.generate` (copy
    solutions/, nbgrader generate_assignment for each assignment: ~8 CPU seconds in a child
    Python), done once per test run for each list of assignments and copied into each new
    course folder, its nbgrader_config.py written for that folder (the only file that names
    it; a gradebook's assignment ids differ from one generate to the next anyway). A course
    folder that already holds a gradebook (``--resume``) is generated for real: there nbgrader
    updates the gradebook in place. For tests that assert nothing about the release itself
    (tests/test_grading_release.py and the graded class generate for real)."""
    from grading import pipeline, release

    real = release.generate

    def generate(root: Path, assignments=tuple(release.ASSIGNMENTS)) -> Path:
        root = Path(root)
        if (root / "gradebook.db").exists():
            return real(root, assignments)

        def build(folder: Path) -> None:
            real(folder / "course", list(assignments))
            (folder / "generated").touch()

        done = once_per_run(
            tmp_path_factory, "release-" + "+".join(assignments), build, "generated"
        )
        shutil.rmtree(root / "solutions", ignore_errors=True)
        shutil.copytree(done / "course", root, dirs_exist_ok=True)
        release.write_course_config(root)
        return root / "exercises"

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline, "generate", generate)
        yield generate


@pytest.fixture(scope="session")
def graded_class(tmp_path_factory):
    """The run's one graded class (tests/graded_class.py): every fixture student, the
    statuses' and the explorer's notebooks, every assignment, through gmm-grade's pipeline
    once per test run; a `graded_class.Run`."""
    import graded_class as gc

    return gc.load(once_per_run(tmp_path_factory, "graded-class", gc.grade, gc.RUN_JSON))


@pytest.fixture(scope="session")
def book_html(book_build) -> Path:
    """The built book's HTML folder; fails with the build log if the build failed."""
    if book_build.returncode != 0:
        pytest.fail("book build failed:\n" + book_build.stdout[-6000:] + book_build.stderr[-6000:])
    return BOOK / "_build" / "html"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture(scope="session")
def book_server(book_html):
    """Base URL of the built book served from 127.0.0.1 on a free port."""
    handler = functools.partial(_QuietHandler, directory=str(book_html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="session")
def chromium():
    """A headless Debian Chromium driven by Playwright (never a downloaded browser)."""
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: run `make setup` (installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
        )
        yield browser
        browser.close()
