"""nbgrader settings for this course; the repository root is the course directory."""

c = get_config()  # noqa: F821 (injected by nbgrader)

c.CourseDirectory.course_id = "pytorch-2-3-practical-patterns"
# Per-cell execution limit while autograding; the default 30 s is too short for training cells.
c.Execute.timeout = 180
# Never copy what a notebook run leaves in source/<lesson>/ (datasets, checkpoints) into release/.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "data", "checkpoints", "*.pt", "*.pth"]
# Feedback pages written by `grader report` / `grader autograde`: "names" shows each failed check and
# its message, never hidden-test code; "full" is nbgrader's own generate_feedback (shows hidden tests).
c.GraderReport.feedback = "names"
