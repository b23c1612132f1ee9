"""Training reports: the learning curves plot and the model card (Markdown + JSON)."""

from __future__ import annotations

import json
from pathlib import Path


def read_curves(path: Path) -> list[dict]:
    """The records of a ``curves.jsonl`` file, in order."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_curves(curves: Path, png: Path) -> None:
    """Total loss (log scale) and the quick-eval PA-MPJPE against the step."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    records = read_curves(curves)
    train = [r for r in records if "total" in r]
    evals = [r for r in records if "eval_pa_mpjpe_mm" in r]
    fig, (ax_loss, ax_eval) = plt.subplots(1, 2, figsize=(10, 3.8))
    if train:
        ax_loss.plot([r["step"] for r in train], [r["total"] for r in train], label="total")
        if any("pose" in r for r in train):
            ax_loss.plot([r["step"] for r in train if "pose" in r],
                         [r["pose"] for r in train if "pose" in r], label="pose")
        ax_loss.set_yscale("log")
        ax_loss.legend()
    ax_loss.set(xlabel="step", ylabel="training loss")
    if evals:
        ax_eval.plot([r["step"] for r in evals], [r["eval_pa_mpjpe_mm"] for r in evals], "o-")
    ax_eval.set(xlabel="step", ylabel="PA-MPJPE (mm), synthetic test subset")
    ax_eval.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def write_card(markdown: Path, json_path: Path, card: dict) -> None:
    """The model card as JSON (machine-readable) and Markdown (for people)."""
    json_path.write_text(json.dumps(card, indent=2, default=str) + "\n")
    metrics = card.get("metrics", {})
    # Two-hand models are checked on the mixed split during training (train.loop._finish).
    test_split = ("synthetic:test-twohand" if "mixed" in metrics.get("split", "")
                  else "synthetic:test")
    lines = [
        f"# {card['model']} ({card['config']})",
        "",
        "| | |",
        "|---|---|",
        f"| parameters | {card['parameters'] / 1e6:.2f} M (full model) |",
        f"| backbone weights | {card.get('pretrained') or 'random initialisation'}"
        f"{' (frozen)' if card.get('backbone_frozen') else ''} |",
        f"| training data | {card['data']} |",
        f"| steps x batch x processes | {card['steps']} x {card['batch_size']} x "
        f"{card['world_size']} = {card['samples_seen']} samples |",
        f"| optimiser, lr, schedule | {card['optimizer']}, {card['lr']}, "
        f"{json.dumps(card['schedule'])} |",
        f"| mixed precision | {card['amp']} |",
        f"| hardware | {card['hardware']} |",
        f"| wall time | {card['wall_time_s'] / 60:.1f} min |",
        f"| torch | {card['torch']} |",
        f"| date | {card['date']} |",
        "",
        f"Quick evaluation ({metrics.get('split', '-')}):",
        "",
        "| metric | value |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in metrics.items() if k != "split"),
        "",
        "Configuration: `" + json.dumps(card["config_values"], default=str) + "`",
        "",
        "Full evaluation: `hand-pose eval --model "
        f"{card['model']} --data {test_split}` (PA-MPJPE, PA-MPVPE, F-scores).",
        "",
    ]
    markdown.write_text("\n".join(lines))
