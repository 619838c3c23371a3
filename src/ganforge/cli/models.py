"""``ganforge models``: the built-in trained models (:mod:`ganforge.models`).

ganforge models                       # name, task, in -> out, size, training data (licence), headline figure
ganforge models NAME                  # the whole model card
ganforge models pack RUN --out DIR    # a run as a shareable model folder (README.md card, config.json, safetensors)
"""

from __future__ import annotations

import argparse
import json

ORDER = 15  # place in `ganforge --help`
HELP = "list the built-in trained models, print one's model card, or pack a run as a model folder"
DESCRIPTION = (
    "Built-in models ship with ganforge and work by name wherever a run folder does (ganforge sample digits, "
    "ganforge upscale photo.jpg --model photo-x4, ganforge.load('digits'), --init-from digits). "
    "'ganforge models NAME' prints a model's card; 'ganforge models pack RUN --out DIR' writes a run's "
    "checkpoint as a model folder with a card, ready to share or to upload to a model hub as it is."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("words", nargs="*", metavar="NAME | pack RUN", help="a model's name, or: pack RUN")
    parser.add_argument("--json", action="store_true", help="print the list (or the card's fields) as JSON")
    parser.add_argument("--out", metavar="DIR", help="pack: the new model folder to write")
    parser.add_argument("--checkpoint", default="last", help="pack: last | best | STEP | checkpoint folder")
    parser.add_argument("--network", action="append", metavar="NAME", help="pack: only these weights (repeatable)")


def run(args: argparse.Namespace) -> int:
    from ganforge import models
    from ganforge.errors import UsageError
    from ganforge.models.card import card_summary

    words = list(args.words)
    if words and words[0] == "pack":
        if len(words) != 2 or not args.out:
            raise UsageError("pack: give the run and the new folder: ganforge models pack RUN --out DIR")
        from ganforge.models.pack import pack

        out = pack(words[1], args.out, checkpoint=args.checkpoint, networks=args.network)
        print(f"packed '{words[1]}' into {out} (README.md card, config.json, weights); ganforge.load('{out}') loads it")
        return 0
    if len(words) > 1:
        raise UsageError(f"expected one model name, got {' '.join(words)}")
    if words:
        card = models.get(words[0])
        print(
            json.dumps(card.meta, indent=2, default=str) if args.json else card.body, end="" if not args.json else "\n"
        )
        return 0
    rows = [card_summary(models.get(n)) for n in models.names()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no built-in models are installed")
        return 0
    for r in rows:
        print(f"{r['name']:16s} {r['task']:10s} {r['size_mb']:6.2f} MB  {r['input']} -> {r['output']}")
        print(f"{'':16s} data: {r['data']}")
        if r["headline"]:
            print(f"{'':16s} {r['headline']}")
    print(f"\n{len(rows)} models; 'ganforge models NAME' prints a model's card")
    return 0
