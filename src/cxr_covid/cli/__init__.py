"""The command line: a thin layer that parses options, calls one core function, renders it."""

from cxr_covid.cli.app import app, main

__all__ = ["app", "main"]
