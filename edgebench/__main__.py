"""``python -m edgebench``: the ``edgebench`` command where its console script is not on PATH."""

from edgebench.cli import app

if __name__ == "__main__":
    app(prog_name="edgebench")
