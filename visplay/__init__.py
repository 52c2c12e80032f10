"""visplay: VisPlay (arXiv 2511.15661), reproducible and extensible.

The core (this package) defines hook points and runs the self-play loop; everything model-, algorithm- or
data-specific lives in plugins registered under the ``visplay`` entry-point group.
"""

__version__ = "0.1.0"
