"""Evidence that the SOP pipeline trains: a tiny ALBERT-style model (MLM + sentence-order
prediction) on the embedded corpus learns the sentence order well above chance while its MLM
loss falls.

    python examples/sentence_order.py [--steps 1000] [--out runs/sop]

It is ``lmobjectives pretrain --objective sop`` with a larger held-out evaluation (10 % of the
documents, up to 64 batches of 32 pairs), followed by a binomial test of the held-out SOP
accuracy against chance (0.5): the labels are balanced by construction (A and B swapped with
probability ½), so an accuracy ``a`` over ``n`` held-out pairs is
``z = (a − 0.5) / sqrt(0.25 / n)`` standard errors above chance.
"""

from __future__ import annotations

import argparse
import math

from lmobjectives.lab.pretrain import PretrainConfig, pretrain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--out", default="runs/sop")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--held-out",
        type=float,
        default=0.1,
        help="share of documents held out (0.1: ~2,000 pairs, so ±0.022 is chance's 2-σ band)",
    )
    args = parser.parse_args()
    config = PretrainConfig(
        objective="sop",
        steps=args.steps,
        batch_size=32,
        seq_length=64,
        hidden_size=128,
        learning_rate=1e-3,
        eval_batches=64,
        held_out=args.held_out,
        seed=args.seed,
    )
    result = pretrain(config, out=args.out)
    first, last = result["eval"][0], result["eval"][-1]
    n = result["eval_samples"]
    z = (last["pair_accuracy"] - 0.5) / math.sqrt(0.25 / n)
    print(f"held-out MLM loss {first['mlm_loss']:.3f} -> {last['mlm_loss']:.3f}")
    print(
        f"held-out SOP accuracy {first['pair_accuracy']:.3f} -> {last['pair_accuracy']:.3f} "
        f"({z:.1f} standard errors above chance over {n} held-out pairs)"
    )
    for row in result["eval"]:
        print(
            f"  step {row['step']:>5}: mlm_loss {row['mlm_loss']:.3f}, "
            f"sop accuracy {row['pair_accuracy']:.3f}"
        )


if __name__ == "__main__":
    main()
