"""metrics.jsonl: resume truncation keeps exactly what the resumed run will not log again."""

from __future__ import annotations

from semantic_genesis.training.logging import MetricsLogger, read_metrics


def test_truncate_after_checkpoint(tmp_path):
    log = MetricsLogger(tmp_path, tensorboard=False)
    for step in (1, 2, 3, 4):
        log.log({"kind": "train", "step": step, "epoch": 0 if step <= 2 else 1, "loss": 1.0 / step})
        if step in (2, 4):
            log.log({"kind": "validation", "step": step, "epoch": 0 if step == 2 else 1, "loss": 0.5})
    log.close()
    with open(tmp_path / "metrics.jsonl", "a") as handle:
        handle.write('{"kind": "train", "step": 5, "lo')  # a line cut by SIGKILL
    # checkpoint at step 4, taken before epoch 1's validation (progress epoch still 1)
    MetricsLogger(tmp_path, tensorboard=False).truncate_after(4, epoch=1)
    records = read_metrics(tmp_path)
    assert [(r["kind"], r["step"]) for r in records] == [
        ("train", 1), ("train", 2), ("validation", 2), ("train", 3), ("train", 4)
    ]
    assert read_metrics(tmp_path, "validation")[0]["epoch"] == 0
