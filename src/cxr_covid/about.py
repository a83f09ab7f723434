"""What the tool is: its version and the disclaimer every output carries.

A ground module (it imports nothing), so any layer may say who wrote a file and that it is
not a diagnostic device without importing the package root, which exposes the Python API.
"""

# The one place the version is written: hatch reads it for the wheel and sdist
# ([tool.hatch.version] in pyproject.toml), `--version`, `info` and model records import it.
__version__ = "0.1.0"

DISCLAIMER = (
    "Research tool, not a diagnostic device: its outputs must not be used to diagnose, "
    "treat or triage any patient."
)


def install_hint(extra: str) -> str:
    """How to install an optional extra, from PyPI and from a source checkout."""
    return f"pip install 'cxr-covid[{extra}]' (from a source checkout: pip install -e '.[{extra}]')"
