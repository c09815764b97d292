"""The report's section on what shipped: the recommended run's best/ and how it compares
with the space's defaults released the same way (bench.release.reference)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from bench.report.loading import Context
from bench.report.render import Block, Heading, Link, Paragraph
from bench.report.time_spent import RELEASE_CONFIG

BEST_DIR, SHIPPED = RELEASE_CONFIG  # best/config.json, named once for the report
CARD = "model_card.md"


def section(ctx: Context, out_dir: Path | None = None) -> list[Block]:
    """What results/<run>/best/ holds for the recommended run, linked from the report's folder
    (out_dir), with its comparison against the defaults; nothing when nothing shipped."""
    if ctx.choice is None:
        return []
    run, record = ctx.choice
    best = run.path / BEST_DIR
    try:
        shipped = json.loads((best / SHIPPED).read_text())
    except (OSError, ValueError):
        return []  # nothing shipped yet, or an export cut short that the next one replaces
    blocks: list[Block] = [Heading("Released", 2), Paragraph(_shipped_sentence(shipped, record))]
    href = os.path.relpath(best / CARD, out_dir) if out_dir else str(best / CARD)
    blocks.append(Link("The model, its formats and its card:", f"{BEST_DIR}/{CARD}", href))
    against = shipped.get("against_defaults")
    if against is None:
        return blocks
    if against.get("rows"):
        blocks.append(Paragraph(_against_sentence(against)))
    if against.get("verdict"):
        blocks.append(Paragraph(against["verdict"]))
    elif not against.get("rows"):
        blocks.append(
            Paragraph(
                "No release of the space's defaults with the same recipe and seed was found to "
                "compare it with: `bench export RUN --retrain ... --reference train` trains one "
                "once and keeps it for later nights."
            )
        )
    return blocks


def _shipped_sentence(shipped: dict, record: dict) -> str:
    train = shipped.get("training") or {}
    what = f"trial {shipped.get('trial_id')} of run {shipped.get('run')}"
    if shipped.get("trial_id") != record["trial_id"]:
        what += f", not the trial recommended above ({record['trial_id']}): export again"
    how = "its trial's own weights"
    if train.get("retrained_on_all_training_images"):
        clean = train.get("clean_epochs") or 0
        how = (
            f"retrained on {train.get('train_images'):,} images for {train.get('epochs')} "
            f"epochs{f' and {clean} without augmentation' if clean else ''} from seed "
            f"{train.get('seed')}"
        )
    low, high = shipped.get("test_interval") or (None, None)
    interval = f" (95% interval {low:.4f} to {high:.4f})" if low is not None else ""
    return (
        f"Shipped: {what}, chosen by {shipped.get('selection')}; {how}. Test accuracy "
        f"{shipped['test_accuracy']:.4f}{interval}, test loss {shipped['test_loss']:.4f}."
    )


def _against_sentence(against: dict) -> str:
    rows = against["rows"]
    if len(rows) == 1:
        row = rows[0]
        return (
            f"The space's defaults released with the same recipe from the same seed "
            f"({row['seed']}): test accuracy {row['defaults_accuracy']:.4f}, loss "
            f"{row['defaults_loss']:.4f}, against this release's {row['release_accuracy']:.4f} "
            f"and {row['release_loss']:.4f}."
        )
    mine, theirs = against["release_accuracy"], against["defaults_accuracy"]
    return (
        f"Over seeds {', '.join(str(r['seed']) for r in rows)}: mean test accuracy "
        f"{_mean(mine)} released, {_mean(theirs)} for the space's defaults released with the "
        "same recipe (95% t intervals)."
    )


def _mean(summary: dict) -> str:
    if summary.get("low") is None:
        return f"{summary['mean']:.4f}"
    return f"{summary['mean']:.4f} ({summary['low']:.4f} to {summary['high']:.4f})"
