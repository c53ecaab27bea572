"""Write edgebench/docs/experiment.md: every field of an experiment file, its type, default and meaning, from the schema
itself (edgebench.config.Experiment), so the reference cannot drift from what `edgebench run` accepts.

    python scripts/write_experiment_reference.py            # rewrite edgebench/docs/experiment.md
    python scripts/write_experiment_reference.py --check    # exit 1 when the file is not what the schema gives
"""

from __future__ import annotations

import argparse
import sys

from edgebench.config_reference import REFERENCE_FILE, experiment_reference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    text = experiment_reference()
    if parser.parse_args().check:
        if not REFERENCE_FILE.is_file() or REFERENCE_FILE.read_text() != text:
            sys.exit(f"{REFERENCE_FILE} is stale: run python scripts/write_experiment_reference.py")
        return
    REFERENCE_FILE.write_text(text)
    print(f"wrote {REFERENCE_FILE} ({text.count(chr(10))} lines)")


if __name__ == "__main__":
    main()
