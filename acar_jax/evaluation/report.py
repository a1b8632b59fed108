"""Evaluation report: per-class AP table (console, CSV), per-class AP bar chart (PNG), class-group mAPs,
and logging of all of it to a clu metric writer (TensorBoard).

Groups are a mapping {name: class ids}. The default follows the AVA paper's split of the 80 action ids
(the AVA v2.2 label map's id ranges): person pose (movement) 1-14, object manipulation 15-63, person interaction 64-80;
other datasets pass their own (the synthetic one: pose / actor / relational). A group's mAP is the mean AP of
its classes that have GT (the evaluator's NaN classes are left out, as in the overall mAP).
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Mapping, Sequence

import numpy as np

from acar_jax.evaluation.ava_metric import FrameMapResult

GROUPS = (("pose", 1, 14), ("object", 15, 63), ("person", 64, 80))   # (name, first id, last id), inclusive
AVA_GROUPS: dict[str, tuple[int, ...]] = {name: tuple(range(lo, hi + 1)) for name, lo, hi in GROUPS}
_PALETTE = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860")
_OTHER_COLOUR = "#8C8C8C"

Groups = Mapping[str, Sequence[int]]


def group_of(class_id: int, groups: Groups | None = None) -> str:
    """The name of the group holding `class_id` (default: AVA's 'pose', 'object', 'person'); 'other' if none."""
    for name, ids in (AVA_GROUPS if groups is None else groups).items():
        if class_id in ids:
            return name
    return "other"


def group_map(result: FrameMapResult, groups: Groups | None = None) -> dict[str, float]:
    """{group: mAP}: mean AP of the group's classes with GT (NaN if none); default groups: AVA's."""
    groups = AVA_GROUPS if groups is None else groups
    names = np.array([group_of(c, groups) for c in result.class_ids])
    out = {}
    for name in groups:
        ap = result.ap[names == name]
        ap = ap[~np.isnan(ap)]
        out[name] = float(ap.mean()) if ap.size else float("nan")
    return out


def _group_colours(groups: Groups | None) -> dict[str, str]:
    names = list(AVA_GROUPS if groups is None else groups)
    return {**{n: _PALETTE[i % len(_PALETTE)] for i, n in enumerate(names)}, "other": _OTHER_COLOUR}


def format_table(result: FrameMapResult, groups: Groups | None = None) -> str:
    """Console table: one line per class (label-map order), then the group and overall mAPs."""
    width = max(len(n) for n in result.class_names)
    gw = max([6] + [len(g) for g in (AVA_GROUPS if groups is None else groups)])
    lines = [f"{'id':>3}  {'class':<{width}}  {'group':<{gw}}  {'#GT':>6}  {'AP':>7}",
             f"{'-' * 3}  {'-' * width}  {'-' * gw}  {'-' * 6}  {'-' * 7}"]
    rows = zip(result.class_ids, result.class_names, result.num_gt.tolist(), result.ap.tolist(), strict=True)
    for cid, name, n, ap in rows:
        lines.append(f"{cid:>3}  {name:<{width}}  {group_of(cid, groups):<{gw}}  {n:>6}  {_pct(ap):>7}")
    for name, value in group_map(result, groups).items():
        lines.append(f"mAP {name:<{width + gw + 7}}  {_pct(value):>7}")
    lines.append(f"mAP {'all':<{width + gw + 7}}  {_pct(result.mean_ap):>7}")
    return "\n".join(lines)


def write_table_csv(path: str | os.PathLike, result: FrameMapResult, groups: Groups | None = None) -> None:
    """CSV `class_id,name,group,num_gt,ap` (AP as a fraction at full precision, empty when NaN)."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["class_id", "name", "group", "num_gt", "ap"])
        for cid, name, n, ap in zip(result.class_ids, result.class_names, result.num_gt.tolist(),
                                    result.ap.tolist(), strict=True):
            w.writerow([cid, name, group_of(cid, groups), n, "" if np.isnan(ap) else repr(ap)])


def read_table_csv(path: str | os.PathLike) -> dict[int, float]:
    """{class_id: AP} from `write_table_csv`'s file (NaN for empty AP cells); errors name file and line."""
    out = {}
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or header[:1] != ["class_id"] or "ap" not in header:
            raise ValueError(f"{path}:1: expected a header with class_id and ap (a per-class AP table), "
                             f"found {header!r}")
        col = header.index("ap")
        for row in reader:
            try:
                out[int(row[0])] = float(row[col]) if row[col] else float("nan")
            except (ValueError, IndexError):
                raise ValueError(f"{path}:{reader.line_num}: expected class_id and ap, "
                                 f"found {row!r}") from None
    return out


def bar_chart_png(result: FrameMapResult, title: str = "", groups: Groups | None = None) -> bytes:
    """PNG bytes of a per-class AP bar chart (classes in label-map order, coloured by group, mAP line)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # Agg: no display, no pyplot state
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    n = len(result.class_ids)
    fig = Figure(figsize=(max(8.0, 0.22 * n + 2), 6.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ap = np.nan_to_num(result.ap, nan=0.0) * 100
    palette = _group_colours(groups)
    colours = [palette[group_of(c, groups)] for c in result.class_ids]
    ax.bar(np.arange(n), ap, color=colours, width=0.8)
    if not np.isnan(result.mean_ap):
        ax.axhline(result.mean_ap * 100, color="black", linestyle="--", linewidth=1)
    ax.set_xticks(np.arange(n))
    labels = [f"{c} {name[:24]}" for c, name in zip(result.class_ids, result.class_names, strict=True)]
    ax.set_xticklabels(labels, rotation=90, fontsize=6)
    ax.set_xlim(-0.6, n - 0.4)
    ax.set_ylim(0, 100)
    ax.set_ylabel("AP@0.5 IoU (%)")
    ax.set_title(title or f"per-class AP, mAP {_pct(result.mean_ap)}")
    group_maps = group_map(result, groups)
    ax.legend(handles=[Patch(color=palette[g], label=f"{g} (mAP {_pct(v)})") for g, v in group_maps.items()],
              fontsize=8, loc="upper right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def write_report(result: FrameMapResult, out_dir: str | os.PathLike, name: str = "eval",
                 groups: Groups | None = None) -> dict[str, str]:
    """Writes `<name>_per_class_ap.{csv,png,txt}` (table, bar chart, console table) to out_dir."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {kind: os.path.join(out_dir, f"{name}_per_class_ap.{kind}") for kind in ("csv", "png", "txt")}
    write_table_csv(paths["csv"], result, groups)
    with open(paths["png"], "wb") as f:
        f.write(bar_chart_png(result, title=name, groups=groups))
    with open(paths["txt"], "w") as f:
        f.write(format_table(result, groups) + "\n")
    return paths


def summary_scalars(result: FrameMapResult, prefix: str = "eval", groups: Groups | None = None) -> dict[str, float]:
    """Scalars: `{prefix}/mAP`, `{prefix}/mAP_<group>`, `{prefix}/AP/<id>_<name>` (NaN classes left out)."""
    out = {f"{prefix}/mAP": float(result.mean_ap)}
    out.update({f"{prefix}/mAP_{g}": v for g, v in group_map(result, groups).items()})
    for cid, name, ap in zip(result.class_ids, result.class_names, result.ap.tolist(), strict=True):
        if not np.isnan(ap):
            out[f"{prefix}/AP/{cid:02d}_{_tag(name)}"] = ap
    return out


def log_report(writer, step: int, result: FrameMapResult, prefix: str = "eval", chart: bool = True,
               groups: Groups | None = None) -> None:
    """Logs `summary_scalars`, the table (text) and, if `chart`, the bar chart (image) to a clu writer."""
    writer.write_scalars(step, summary_scalars(result, prefix, groups))
    writer.write_texts(step, {f"{prefix}/per_class_ap": "```\n" + format_table(result, groups) + "\n```"})
    if chart:
        title = f"step {step}: mAP {_pct(result.mean_ap)}"
        png = bar_chart_png(result, title=title, groups=groups)
        writer.write_images(step, {f"{prefix}/per_class_ap": _png_to_array(png)[None]})
    writer.flush()


def _png_to_array(png: bytes) -> np.ndarray:
    """[H, W, 3] uint8 pixels of a PNG."""
    from PIL import Image
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def _pct(x: float) -> str:
    return "n/a" if np.isnan(x) else f"{100 * x:.2f}"


def _tag(name: str) -> str:
    """A TensorBoard tag piece from a class name: 'bend/bow (at the waist)' -> 'bend_bow_at_the_waist'."""
    return re.sub(r"[^0-9A-Za-z]+", "_", name).strip("_")

