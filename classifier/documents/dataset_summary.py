"""The data set section of a paper: who, where on the body, how confirmed, how many per class."""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter
from pathlib import Path

from classifier.data import SPLITS, DataError, Record, load_split, read_metadata
from classifier.labels import BY_CODE, CODES

DX_TYPES: dict[str, str] = {
    "histo": "histopathology: the lesion was excised and a pathologist made the diagnosis",
    "follow_up": "follow-up: a nevus monitored by digital dermatoscopy that did not change over three visits "
                 "or 1.5 years, taken as benign",
    "consensus": "expert consensus: typical benign lesions with no histopathology or follow-up, "
                 "diagnosed by agreement of dermatologists",
    "confocal": "in-vivo reflectance confocal microscopy: a cellular-resolution imaging technique, used to "
                "confirm some benign keratoses",
}
SEXES = ("male", "female", "unknown")


def age_summary(ages: list[float | None]) -> dict:
    """Mean, sample sd, median and range of the reported ages; how many are reported and missing."""
    known = [a for a in ages if a is not None]
    summary = {"n": len(known), "missing": len(ages) - len(known),
               "mean": None, "sd": None, "median": None, "min": None, "max": None}
    if known:
        summary.update(mean=round(statistics.fmean(known), 2),
                       sd=round(statistics.stdev(known), 2) if len(known) > 1 else None,
                       median=statistics.median(known), min=min(known), max=max(known))
    return summary


def _ordered(counter: Counter, first: tuple[str, ...] = ()) -> dict[str, int]:
    """Counts with the names in ``first`` leading (where present), the rest by count then name."""
    keys = [k for k in first if k in counter] + sorted((k for k in counter if k not in first),
                                                        key=lambda k: (-counter[k], k))
    return {k: counter[k] for k in keys}


def describe_records(records: list[Record], split: dict[str, str] | None = None) -> dict:
    """All the numbers of the data set section. Lesion-level values come from each lesion's first image."""
    lesions: dict[str, Record] = {}
    for r in records:
        lesions.setdefault(r.lesion_id, r)
    lesion_rows = list(lesions.values())
    per_lesion = Counter(r.lesion_id for r in records)
    fields = {(r.lesion_id, r.dx, r.dx_type, r.age, r.sex, r.localization) for r in records}
    inconsistent = len(fields) - len({f[0] for f in fields})
    dx_types = tuple(DX_TYPES) + tuple(sorted({r.dx_type or "unknown" for r in records} - set(DX_TYPES)))
    stats = {
        "images": len(records),
        "lesions": len(lesions),
        "images_per_lesion": {
            "mean": round(len(records) / len(lesions), 3) if lesions else None,
            "max": max(per_lesion.values(), default=0),
            "distribution": {str(k): v for k, v in sorted(Counter(per_lesion.values()).items())},
        },
        "lesions_with_inconsistent_metadata": inconsistent,
        "age": {"images": age_summary([r.age for r in records]),
                "lesions": age_summary([r.age for r in lesion_rows])},
        "age_by_dx": {dx: age_summary([r.age for r in records if r.dx == dx]) for dx in CODES},
        "sex": {"images": _ordered(Counter(r.sex for r in records), SEXES),
                "lesions": _ordered(Counter(r.sex for r in lesion_rows), SEXES)},
        "localization": {"images": _ordered(Counter(r.localization for r in records)),
                         "lesions": _ordered(Counter(r.localization for r in lesion_rows))},
        "dx_type": {"images": _ordered(Counter(r.dx_type or "unknown" for r in records), dx_types),
                    "lesions": _ordered(Counter(r.dx_type or "unknown" for r in lesion_rows), dx_types)},
        "dx_type_by_dx": {dx: {t: sum(1 for r in records if r.dx == dx and (r.dx_type or "unknown") == t)
                               for t in dx_types} for dx in CODES},
        "classes": {dx: {"name": BY_CODE[dx].name, "malignant": BY_CODE[dx].malignant,
                         "images": sum(1 for r in records if r.dx == dx),
                         "lesions": sum(1 for r in lesion_rows if r.dx == dx)} for dx in CODES},
    }
    if split is not None:
        sides = SPLITS + ("unassigned",)
        side_of = {r.image_id: split.get(r.image_id, "unassigned") for r in records}
        stats["splits"] = {
            s: {"images": sum(1 for r in records if side_of[r.image_id] == s),
                "lesions": len({r.lesion_id for r in records if side_of[r.image_id] == s}),
                "classes": {dx: sum(1 for r in records if side_of[r.image_id] == s and r.dx == dx) for dx in CODES}}
            for s in sides
        }
        if not stats["splits"]["unassigned"]["images"]:
            del stats["splits"]["unassigned"]
    return stats


def _pct(n: int, total: int) -> str:
    return f"{100 * n / total:.1f}%" if total else "–"


def _age_cells(a: dict) -> str:
    if not a["n"]:
        return "– | – | – | 0 | " + str(a["missing"])
    sd = f"{a['sd']:.1f}" if a["sd"] is not None else "–"
    return f"{a['mean']:.1f} ± {sd} | {a['median']:g} | {a['min']:g}–{a['max']:g} | {a['n']} | {a['missing']}"


def render_markdown(stats: dict, plots: dict[str, str] | None = None) -> str:
    """The data set section as markdown; ``plots`` maps a caption to a PNG file name."""
    n_img, n_les = stats["images"], stats["lesions"]
    ipl = stats["images_per_lesion"]
    lines = [
        "# Data set",
        "",
        f"The data set holds **{n_img:,} dermatoscopic images** of **{n_les:,} distinct lesions** "
        f"({ipl['mean']} images per lesion on average, at most {ipl['max']}). "
        "Images of the same lesion share their metadata"
        + (f" (except {stats['lesions_with_inconsistent_metadata']} lesion(s) whose images disagree)"
           if stats["lesions_with_inconsistent_metadata"] else "")
        + ", so counts are given per image and, where it matters, per lesion "
        "(each lesion counted once, with the values of its first image in the metadata file).",
        "",
        "| images per lesion | lesions |",
        "| --- | ---: |",
        *[f"| {k} | {v:,} |" for k, v in ipl["distribution"].items()],
        "",
        "## Diagnoses",
        "",
        "| code | diagnosis | malignant | images | % images | lesions | % lesions |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for dx, c in stats["classes"].items():
        lines.append(f"| {dx} | {c['name']} | {'yes' if c['malignant'] else 'no'} | {c['images']:,} | "
                     f"{_pct(c['images'], n_img)} | {c['lesions']:,} | {_pct(c['lesions'], n_les)} |")
    lines += ["", "## Age", "",
              "Age is the participant's age at the time of the photograph (HAM10000 gives it in 5-year steps).",
              "",
              "| group | mean ± sd | median | range | n reported | n missing |",
              "| --- | ---: | ---: | ---: | ---: | ---: |",
              f"| all images | {_age_cells(stats['age']['images'])} |",
              f"| all lesions | {_age_cells(stats['age']['lesions'])} |"]
    lines += [f"| {dx} (images) | {_age_cells(a)} |" for dx, a in stats["age_by_dx"].items()]
    lines += ["", "## Sex", "", "| sex | images | % | lesions | % |", "| --- | ---: | ---: | ---: | ---: |"]
    for sex, n in stats["sex"]["images"].items():
        m = stats["sex"]["lesions"].get(sex, 0)
        lines.append(f"| {sex} | {n:,} | {_pct(n, n_img)} | {m:,} | {_pct(m, n_les)} |")
    lines += ["", "## Body site", "",
              "| localization | images | % | lesions | % |", "| --- | ---: | ---: | ---: | ---: |"]
    for site, n in stats["localization"]["images"].items():
        m = stats["localization"]["lesions"].get(site, 0)
        lines.append(f"| {site} | {n:,} | {_pct(n, n_img)} | {m:,} | {_pct(m, n_les)} |")
    dx_types = list(stats["dx_type"]["images"])
    lines += ["", "## How diagnoses were confirmed", "",
              "| dx_type | meaning | images | % | lesions | % |", "| --- | --- | ---: | ---: | ---: | ---: |"]
    for t in dx_types:
        n, m = stats["dx_type"]["images"][t], stats["dx_type"]["lesions"].get(t, 0)
        lines.append(f"| {t} | {DX_TYPES.get(t, '–')} | {n:,} | {_pct(n, n_img)} | {m:,} | {_pct(m, n_les)} |")
    lines += ["", "Confirmation by diagnosis (images):", "",
              "| dx | " + " | ".join(dx_types) + " | total |",
              "| --- |" + " ---: |" * (len(dx_types) + 1)]
    for dx, row in stats["dx_type_by_dx"].items():
        lines.append(f"| {dx} | " + " | ".join(f"{row.get(t, 0):,}" for t in dx_types) + f" | {sum(row.values()):,} |")
    if "splits" in stats:
        sides = list(stats["splits"])
        lines += ["", "## Train / validation / test split", "",
                  "Images per class in each split (the split is grouped by lesion, so no lesion is in two splits).",
                  "", "| dx | " + " | ".join(sides) + " |", "| --- |" + " ---: |" * len(sides)]
        for dx in stats["classes"]:
            lines.append(f"| {dx} | " + " | ".join(f"{stats['splits'][s]['classes'][dx]:,}" for s in sides) + " |")
        lines.append("| **images** | " + " | ".join(f"**{stats['splits'][s]['images']:,}**" for s in sides) + " |")
        lines.append("| **lesions** | " + " | ".join(f"**{stats['splits'][s]['lesions']:,}**" for s in sides) + " |")
    if plots:
        lines += ["", "## Figures", ""]
        lines += [f"![{caption}]({name})\n" for caption, name in plots.items()]
    return "\n".join(lines) + "\n"


def plot_figures(stats: dict, records: list[Record], out_dir: Path) -> dict[str, str]:
    """Write the PNG figures into ``out_dir``; returns caption -> file name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    plots = {}

    def save(fig, name, caption):
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=120)
        plt.close(fig)
        plots[caption] = name

    codes = list(stats["classes"])
    x = np.arange(len(codes))
    fig, ax = plt.subplots(figsize=(7, 4))
    images = [stats["classes"][c]["images"] for c in codes]
    lesions = [stats["classes"][c]["lesions"] for c in codes]
    ax.bar(x - 0.2, images, 0.4, label="images")
    ax.bar(x + 0.2, lesions, 0.4, label="lesions")
    for xi, n in zip(x, images, strict=True):
        ax.text(xi - 0.2, n, f"{n:,}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, codes)
    ax.set_ylabel("count")
    ax.set_title("Class frequencies")
    ax.legend()
    save(fig, "class_frequencies.png", "Class frequencies (images and lesions)")

    fig, ax = plt.subplots(figsize=(7, 4))
    known = [r.age for r in records if r.age is not None]
    lo, hi = (min(known), max(known)) if known else (0, 90)
    bins = np.arange(5 * math.floor(lo / 5) - 2.5, 5 * math.ceil(hi / 5) + 7.5, 5)
    sexes = list(stats["sex"]["images"])
    ages = [[r.age for r in records if r.age is not None and r.sex == s] for s in sexes]
    ax.hist(ages, bins=bins, stacked=True, label=sexes)
    ax.set_xlabel("age (years)")
    ax.set_ylabel("images")
    ax.set_title(f"Age by sex (images; {stats['age']['images']['missing']} without age)")
    ax.legend()
    save(fig, "age_by_sex.png", "Age histogram by sex (images)")

    sites = stats["localization"]["images"]
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(sites) + 1.2))
    y = np.arange(len(sites))
    ax.barh(y, list(sites.values()))
    ax.set_yticks(y, list(sites))
    ax.invert_yaxis()
    ax.set_xlabel("images")
    ax.set_title("Body sites")
    save(fig, "body_sites.png", "Body sites (images)")

    fig, ax = plt.subplots(figsize=(7, 4))
    totals = np.array([sum(stats["dx_type_by_dx"][c].values()) for c in codes])
    bottom = np.zeros(len(codes))
    for t in stats["dx_type"]["images"]:
        share = np.array([stats["dx_type_by_dx"][c].get(t, 0) for c in codes]) / np.maximum(totals, 1)
        ax.bar(codes, share, bottom=bottom, label=t)
        bottom += share
    for xi, n in enumerate(totals):
        ax.text(xi, 1.01, f"n={n:,}", ha="center", va="bottom", fontsize=8)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("share of images")
    ax.set_title("How the diagnosis was confirmed, by diagnosis")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    save(fig, "dx_type_by_dx.png", "Confirmation method by diagnosis (share of images)")
    return plots


def describe(data_dir: Path, out_dir: Path, split_path: Path | None = None) -> Path:
    """Write dataset.md, dataset.json and the figures into ``out_dir``; returns the markdown path."""
    records = read_metadata(data_dir)
    split = None
    if split_path is not None:
        if not Path(split_path).is_file():
            raise DataError(f"{split_path}: split file not found")
        split = load_split(split_path)
    stats = describe_records(records, split)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = plot_figures(stats, records, out_dir)
    (out_dir / "dataset.json").write_text(json.dumps(stats, indent=2) + "\n")
    path = out_dir / "dataset.md"
    path.write_text(render_markdown(stats, plots))
    return path
