"""`sample-data`: the generated demo dataset (pipeline/sample_data.py)."""

from __future__ import annotations

from pathlib import Path

import pipeline.cli.argtypes as argtypes
from pipeline import sample_data
from pipeline.errors import UsageError


def write_sample_data(args) -> int:
    try:
        summary = sample_data.generate(
            args.out,
            num_classes=args.classes,
            per_class=args.per_class,
            seed=args.seed,
            size=args.size,
        )
    except (ValueError, FileExistsError) as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"cannot write {args.out}: {exc.strerror or exc}") from None
    images = summary["images"]
    print(
        f"wrote {sum(images.values())} images of {len(summary['classes'])} classes to "
        f"{summary['out_dir']} ({summary['size']}, seed {summary['seed']}, "
        f"{summary['bytes'] / 1e6:.1f} MB)"
    )
    print("  " + "  ".join(f"{split}: {count}" for split, count in images.items()))
    print("  classes:")
    for folder, pattern in summary["patterns"].items():
        print(f"    {folder}  ({pattern})")
    print("  bad files in train/, for the preparation step to skip:")
    for bad in summary["bad_files"]:
        print(f"    {bad['path']}  ({bad['kind']})")
    return 0


def add_sample_data(parser) -> None:
    parser.description = (
        "Write a learnable ImageFolder in the reference layout (train/ valid/ "
        "test/, numbered breed folders), with a few bad files in train/ for the preparation "
        "step to skip. The same arguments always give the same bytes."
    )
    parser.add_argument("--out", type=Path, required=True, help="new or empty folder")
    parser.add_argument(
        "--classes",
        type=argtypes.whole_number(2, len(sample_data.BREEDS), what="class count"),
        default=5,
        help="breeds (default: 5)",
    )
    parser.add_argument(
        "--per-class",
        type=argtypes.whole_number(1, what="count"),
        default=sample_data.DEFAULT_PER_CLASS,
        help="training images per breed; valid/ and test/ get a quarter each "
        f"(default: {sample_data.DEFAULT_PER_CLASS})",
    )
    parser.add_argument("--seed", type=argtypes.whole_number(0, 2**32 - 1, what="seed"), default=0)
    parser.add_argument(
        "--size",
        choices=tuple(sample_data.SIZES),
        default="small",
        help="small: {}-{} px sides (fast demos); photo: {}-{} px, like phone photos".format(
            *sample_data.SIZES["small"], *sample_data.SIZES["photo"]
        ),
    )
    parser.set_defaults(handler=write_sample_data)


PARSERS = {"sample-data": add_sample_data}
