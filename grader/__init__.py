"""Instructor tooling for the nbgrader lessons: one module per thing an instructor does.

``data`` stages datasets, ``release`` generates and checks release/ (``publish`` pushes it to the
students' repository), ``validate`` checks an assignment's tests (``authoring``) and runs notebooks both
ways, ``autograde`` grades a class, ``report`` and ``export`` take the grades out, ``demo`` builds and
grades the demo class, ``cli`` only parses arguments.
"""
