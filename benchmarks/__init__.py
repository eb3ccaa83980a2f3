"""tunebench's benchmarks: speed, memory, fault and search-efficiency measurements of the pipeline.

Each module runs as `python -m benchmarks.<name>` from the repository root and saves one result
(`benchmarks.runner`: command, machine, versions, figures) to `benchmarks/results/<name>.json`;
`python -m benchmarks` lists them. benchmarks/README.md says how to run each one.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the repository: params.yaml, data/, the `pipeline` measured
