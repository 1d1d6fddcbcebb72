"""`mmrag models`: per model set, which weights are on this machine and how to get the missing ones."""

from __future__ import annotations

import argparse
import json
import sys

from .exits import EXIT_ERROR, EXIT_OK


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models",
        help="list the model sets and which of their weights are present locally",
        description="For each model set (default: every preset, plus `offline`), each encoder's weights: "
        "present (installed package, Hugging Face cache, local path, or built on use) or missing, with "
        "the command that fetches them. Reads only local files; the network is never tried.",
    )
    p.add_argument("sets", nargs="*", metavar="SET", help="preset names or TOML files (default: all presets)")
    p.add_argument("--json", action="store_true", help="print one JSON object per set")
    p.set_defaults(run=run_models)


def run_models(args: argparse.Namespace) -> int:
    from encoders.base import EncoderError
    from encoders.locate import locate
    from encoders.modelsets import list_model_sets, resolve_model_set

    report = []
    for name in args.sets or list_model_sets():
        entry: dict = {"set": name, "models": []}
        try:
            ms = resolve_model_set(name)
        except EncoderError as err:
            entry["error"] = str(err)
            report.append(entry)
            continue
        entry["warning"] = ms.warning
        for role, spec in _members(ms):
            entry["models"].append({"role": role, **locate(spec).to_dict()})
        if name == "offline" and ms.clip is None:  # the CLIP it would use, once cached
            from encoders import CACHE_PROBES

            found = locate(f"clip:{next(iter(CACHE_PROBES))}").to_dict()
            entry["models"].insert(0, {"role": "clip", **found, "optional": True})  # offline works without
        report.append(entry)
    if args.json:
        print(json.dumps(report, indent=1, ensure_ascii=False))
    else:
        _print(report)
    missing = any(not m["present"] and not m.get("optional") for e in report for m in e["models"])
    missing = missing or any("error" in e for e in report)
    return EXIT_ERROR if missing and args.sets else EXIT_OK


def _members(ms) -> list[tuple[str, str]]:
    """(role, spec) for every encoder of the set, ensemble members included."""
    out = list(ms.specs().items())
    for role, more in (getattr(ms, "extra", None) or {}).items():
        out += [(role, spec) for spec in more]
    return out


def _print(report: list[dict]) -> None:
    for entry in report:
        print(f"{entry['set']}:")
        if "error" in entry:
            print(f"  unavailable: {entry['error']}")
            continue
        if not entry["models"]:
            print("  (no encoders)")
        for m in entry["models"]:
            state = f"present ({m['source']})" if m["present"] else "MISSING"
            state += " (optional: image search)" if m.get("optional") and not m["present"] else ""
            print(f"  {m['role']:<5} {m['spec']:<48} {state}  {m['where']}")
            if m["fetch"]:
                print(f"        get it: {m['fetch']}")
        if entry.get("warning"):
            print(f"  note: {entry['warning']}")
    if any(not m["present"] for e in report for m in e["models"]):
        print(
            "Commands run on a machine with network; copy ~/.cache/huggingface here if this one has none.",
            file=sys.stderr,
        )
