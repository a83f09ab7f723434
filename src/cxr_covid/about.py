"""What the tool is: its version and the disclaimer every output carries.

A ground module (it imports nothing), so any layer may say who wrote a file and that it is
not a diagnostic device without importing the package root, which exposes the Python API.
"""

__version__ = "0.1.0"

DISCLAIMER = (
    "Research tool, not a diagnostic device: its outputs must not be used to diagnose, "
    "treat or triage any patient."
)
