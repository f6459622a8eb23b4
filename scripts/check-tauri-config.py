#!/usr/bin/env python3
"""Validates the Tauri configuration as the Tauri CLI sees it on each platform, without a build.

The CLI merges src-tauri/tauri.conf.json with tauri.<platform>.conf.json (and any --config value)
as a JSON merge patch (RFC 7396) and validates the result against its JSON schema. This script
does the same with the schema shipped in node_modules/@tauri-apps/cli (npm ci at the repo root),
for Linux, macOS and the macOS ad-hoc override the CI workflow passes, and checks that the paths
the configuration names exist (bundle icons; with --staged also the staged bundle inputs).

    python3 scripts/check-tauri-config.py [--staged] [--extra-macos JSON]

Needs the `jsonschema` package (pip install jsonschema). Exit status 1 on any error.
"""
import argparse
import copy
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TAURI = ROOT / "src-tauri"
SCHEMA = ROOT / "node_modules/@tauri-apps/cli/config.schema.json"
# What .github/workflows/macos.yml passes with --config when no Developer ID is configured.
ADHOC = {"bundle": {"macOS": {"signingIdentity": "-", "hardenedRuntime": False}}}


def merge_patch(target, patch):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def load(name):
    path = TAURI / name
    return json.loads(path.read_text()) if path.exists() else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--staged", action="store_true",
                    help="also require the staged bundle inputs (scripts/*/stage-bundle.sh)")
    ap.add_argument("--extra-macos", default=json.dumps(ADHOC),
                    help="a --config value merged over the macOS configuration")
    args = ap.parse_args()

    try:
        import jsonschema
    except ImportError:
        sys.exit("needs the jsonschema package: pip install jsonschema")
    if not SCHEMA.exists():
        sys.exit(f"{SCHEMA} is missing: run `npm ci` at the repository root")
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)

    base = load("tauri.conf.json")
    if base is None:
        sys.exit("src-tauri/tauri.conf.json is missing")
    linux, macos = load("tauri.linux.conf.json"), load("tauri.macos.conf.json")
    variants = {"tauri.conf.json alone": base}
    if linux is not None:
        variants["linux (tauri.conf.json + tauri.linux.conf.json)"] = merge_patch(base, linux)
    if macos is not None:
        mac = merge_patch(base, macos)
        variants["macos (tauri.conf.json + tauri.macos.conf.json)"] = mac
        variants["macos + CI ad-hoc override"] = merge_patch(mac, json.loads(args.extra_macos))

    errors = 0
    for name, config in variants.items():
        problems = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
        for e in problems:
            where = "/".join(str(p) for p in e.absolute_path) or "(root)"
            print(f"INVALID {name}: at {where}: {e.message}")
        errors += len(problems)

        bundle = config.get("bundle", {})
        paths = [("bundle.icon", p) for p in bundle.get("icon", [])]
        if args.staged and name.startswith(("linux", "macos")):
            res = bundle.get("resources") or {}
            paths += [("bundle.resources", p) for p in (res if isinstance(res, list) else res.keys())]
            mac_cfg = bundle.get("macOS", {})
            paths += [("bundle.macOS.frameworks", p) for p in mac_cfg.get("frameworks") or []]
            paths += [("bundle.macOS.files", p) for p in (mac_cfg.get("files") or {}).values()]
            if mac_cfg.get("entitlements"):
                paths.append(("bundle.macOS.entitlements", mac_cfg["entitlements"]))
            deb = bundle.get("linux", {}).get("deb", {})
            paths += [("bundle.linux.deb.files", p) for p in (deb.get("files") or {}).values()]
        for key, p in paths:
            if not (TAURI / p).exists():  # the CLI resolves them from src-tauri/
                print(f"MISSING {name}: {key} names {p}, which does not exist under src-tauri/")
                errors += 1
        if not problems:
            print(f"valid   {name}")
    if errors:
        print(f"{errors} problem(s)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
