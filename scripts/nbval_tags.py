"""Move nbval's comment markers (# NBVAL_CHECK_OUTPUT, ...) out of code cells
into the cell tags nbval reads just the same (nbval-check-output, ...), so a
student does not read test plumbing as part of the lesson.

    python scripts/nbval_tags.py notebooks/*.ipynb labs/*/solution.ipynb
    onvm lab generate labs/*/        # then the student notebooks follow"""
import json
import sys

TAGS = {"NBVAL_CHECK_OUTPUT": "nbval-check-output", "NBVAL_IGNORE_OUTPUT": "nbval-ignore-output",
        "NBVAL_SKIP": "nbval-skip", "NBVAL_RAISES_EXCEPTION": "raises-exception"}


def convert(path):
    """returns: how many markers moved (the file is rewritten only if any)"""
    with open(path) as f:
        raw = f.read()
    nb = json.loads(raw)
    moved = 0
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        src = cell["source"]
        lines = src if isinstance(src, list) else src.splitlines(True)
        keep, tags = [], []
        for line in lines:
            marker = line.strip().lstrip("#").strip() if line.strip().startswith("#") else None
            if marker in TAGS:
                tags.append(TAGS[marker])
            else:
                keep.append(line)
        if not tags:
            continue
        moved += len(tags)
        if keep:
            keep[-1] = keep[-1].rstrip("\n")
        cell["source"] = keep if isinstance(src, list) else "".join(keep)
        have = cell.setdefault("metadata", {}).setdefault("tags", [])
        have += [t for t in tags if t not in have]
    if moved:
        with open(path, "w") as f:
            # the file's own way with non-ASCII text (escaped or not), so only the markers change
            f.write(json.dumps(nb, indent=1, ensure_ascii=raw.isascii()) + "\n")
    return moved


if __name__ == "__main__":
    for p in sys.argv[1:]:
        print("%s: %d markers moved to tags" % (p, convert(p)))
