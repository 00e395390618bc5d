"""Instructor tooling for the nbgrader lessons: one module per thing an instructor does.

``data`` stages datasets, ``release`` generates and checks release/, ``validate`` runs
notebooks both ways, ``autograde`` grades a class, ``demo`` builds and grades the demo class,
``cli`` only parses arguments.
"""
