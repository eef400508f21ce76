"""gmm-course grading: the nbgrader exercises' release and the instructor's pipeline.

- `grading.course`: where things are and the nbgrader settings shared by every entry point.
- `grading.release`: regenerate the student release `exercises/` from `solutions/`.
- `grading.pipeline` / `gmm-grade` (`grading.cli`): grade a folder of submissions end to end
  (collect, autograde, out-of-kernel re-check, redacted feedback, grades CSV).
- `grading.layout`: every path of an nbgrader course folder, and `Part`, a graded part's outcome.
- `grading.isolation`: the bubblewrap sandbox and resource limits every piece of student code
  runs under (`grading.kernel`, the nbgrader kernel; `grading.sandbox`, the re-check child).
- `grading.checks`, `grading.recheck`, `grading.scan`, `grading.sandbox`: the re-check that the
  grade follows (the student's answer cells run in a clean, limited subprocess; their numbers
  are compared with gmmlib outside it; their source is scanned for patching).
"""
