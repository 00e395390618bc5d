"""nbgrader settings for this course; the repository root is the course directory."""

c = get_config()  # noqa: F821 (injected by nbgrader)

c.CourseDirectory.course_id = "pytorch-2-3-practical-patterns"
# Per-cell execution limit while autograding. The longest cell a student writes is the project's final
# training, budgeted at 2 minutes on a 2-core CPU; 10 minutes leaves room for a slower grading machine.
# (`grader autograde` scales it further by cores / threads per kernel.)
c.Execute.timeout = 600
# Stderr alone must not cost points (a library's FutureWarning, a progress bar): nbgrader scores a cell with
# any stderr output 0, so stderr output is dropped before scoring. Errors still score 0.
c.IgnorePattern.enabled = True
c.IgnorePattern.pattern = r"(?s)."
# Never copy into release/ (or a student's graded folder) what a notebook run leaves in source/<lesson>/
# (datasets, checkpoints), nor the assignment's checks (checks.py, beside its notebook: the judge's code).
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "data", "checkpoints", "*.pt", "*.pth", "checks.py"]
# Feedback pages written by `grader report` / `grader autograde`: "names" shows each failed check and
# its message, never hidden-test code; "full" is nbgrader's own generate_feedback (shows hidden tests).
c.GraderReport.feedback = "names"
# The public student repository on GitHub ("owner/repository" and branch), never this one: this repository
# holds the answers (source/ with each assignment's checks.py, the demo class) and stays private. `grader release` builds the
# "Open in Colab" badge of every release notebook and the README's Colab links from these two settings, and
# `grader release --publish` pushes release/ and a student README there (a git URL, or a local path taken
# from this folder), after checking that nothing of the answers goes with them.
c.CourseRelease.github = "pytorch-course/practical-patterns"
c.CourseRelease.branch = "main"
# c.CourseRelease.publish_to = "git@github.com:pytorch-course/practical-patterns.git"
