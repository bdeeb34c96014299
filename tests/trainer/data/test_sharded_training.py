"""A sharded dataset trains exactly like the single file it was cut from (the trainer reads only
through the dataset reader's ordinates/take)."""

from __future__ import annotations

import json

from trainer.config import load_config
from trainer.data.dataset import merge_shards, open_dataset, write_shard
from trainer.training import run_trial


def _metrics(out):
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("seconds", "peak_mem_bytes")} for r in rows]


def test_tiny_trial_on_shards_equals_single_file(tmp_path, odlyzko_small, tiny_config_file):
    single = open_dataset(odlyzko_small)
    sharded = tmp_path / "sharded"
    # Joints inside the training range (2001..2800), the validation and the test windows.
    cuts = [1, 2400, 2950, 9000, 20_000, single.last_index + 1]
    for k, (a, b) in enumerate(zip(cuts[:-1], cuts[1:], strict=True)):
        write_shard(
            str(sharded), k, single.ordinates(a, b), source="odlyzko", first_index=a, abs_accuracy=4e-9
        )
    merge_shards(str(sharded))
    results = {}
    for name, path in (("single", odlyzko_small), ("sharded", sharded)):
        cfg = load_config(tiny_config_file, [f"data.path={path}", "train.epochs=2"])
        out = tmp_path / f"out-{name}"
        assert run_trial(cfg, str(out), echo=lambda _line: None) == 0
        results[name] = _metrics(out)
        assert json.loads((out / "final.json").read_text())["status"] == "completed"
    assert results["sharded"] == results["single"] and results["single"]
