"""One MultiWorkerMirroredStrategy worker, its place in the group read from TF_CONFIG, or one MirroredStrategy
process holding every replica: `python -m xpubench.train.tf_worker SPEC.pkl OUT_DIR` writes OUT_DIR/rank{R}.json
for each of its replicas."""

from __future__ import annotations

import json
import os
import pickle
import sys
from pathlib import Path


def main(spec_file: str, out_dir: str) -> None:
    from xpubench.train.tf_loop import mirrored, multiworker

    spec = pickle.loads(Path(spec_file).read_bytes())
    if spec.strategy == "tf-mirrored":
        reports = mirrored(spec)
    else:
        reports = [multiworker(spec, json.loads(os.environ["TF_CONFIG"])["task"]["index"])]
    for report in reports:
        Path(out_dir, f"rank{report['rank']}.json").write_text(json.dumps(report))
    sys.stdout.flush()
    os._exit(0)  # skip TensorFlow's teardown: the collectives' threads can hang it


if __name__ == "__main__":
    main(*sys.argv[1:3])
