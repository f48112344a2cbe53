"""The HTML report of `diat evaluate`: one self-contained file that opens in a browser without a server.

It holds the metrics table, a before/after grid of a fixed sample of faces and the worst cases
by identity distance; every image is embedded as a base64 PNG, so the file can be mailed or
archived alone. `metric_rows` gives the rows that both this page and the CLI's table show.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from diat_cli.imageio import write_text_atomic


@dataclass(frozen=True)
class FacePair:
    """A face before and after editing (H x W x 3 uint8 each) and a caption."""

    before: np.ndarray
    after: np.ndarray
    caption: str


def _number(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _percent(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{100 * value:.1f}%"


def metric_rows(metrics: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(metric, value, how it was measured) for each reported number, in reading order."""
    rows: list[tuple[str, str, str]] = []
    success = metrics["attribute_success"]
    decision = metrics["classifier"]["decision"]
    rows.append(("Attribute success (edited faces)", _percent(success["edited"]), f"classifier decides {decision}"))
    rows.append(("Attribute success floor (unedited source faces)", _percent(success["unedited"]), "what an editor that changes nothing scores"))
    if success.get("utkface_edited") is not None:
        rows.append(("Attribute success, UTKFace heads (edited)", _percent(success["utkface_edited"]), "age / gender heads trained on UTKFace"))
        rows.append(("Attribute success, UTKFace heads (unedited)", _percent(success["utkface_unedited"]), "floor by the same heads"))
    identity = metrics["identity"]
    threshold = identity["threshold"]
    rows.append(("Identity distance, mean (face vs its edit)", _number(identity["mean_distance"]), f"dlib face-recognition ResNet; same person below {threshold}"))
    rows.append((f"Identity kept (distance < {threshold})", _percent(identity["share_kept"]), f"of {identity['faces']} edits"))
    rows.append(("Rank-1 identification", _percent(identity["rank1"]), f"each edit's nearest of {identity['faces']} unedited faces is its own source"))
    if identity.get("verification_pairs"):
        pairs = identity["verification_pairs"]
        rows.append(("Verification vs other photos of the person (edited)", _percent(identity["verification_edited"]), f"{pairs} pairs, distance < {threshold}"))
        rows.append(("Verification vs other photos of the person (unedited)", _percent(identity["verification_unedited"]), "the same pairs before editing"))
    outside = metrics.get("outside_region")
    if outside:
        rows.append((f"PSNR outside the {outside['region']} region", f"{_number(outside['psnr_db'], 2)} dB", "change where the attribute is not; higher is less change"))
        rows.append((f"SSIM outside the {outside['region']} region", _number(outside["ssim"]), "1 = unchanged"))
    skin = metrics.get("skin_tone")
    if skin:
        visible = skin["visible_delta_e"]
        rows.append(("Skin tone shift, mean delta E", _number(skin["mean_delta_e"], 2),
                     f"CIELAB, mean colour of cheek and forehead patches; {_percent(skin['share_visible'])} of faces over {visible:g}"))
        for name in ("darkest", "lightest"):
            part = skin[f"{name}_third"]
            rows.append((f"Skin tone shift, {name} third of faces", f"{_number(part['mean_delta_e'], 2)} (L* {part['mean_delta_lightness']:+.1f})",
                         f"{part['faces']} faces of mean L* {part['mean_lightness']:.0f}; {_percent(part['share_visible'])} over {visible:g}"))
    realism = metrics["realism"]
    if realism.get("skipped"):
        rows.append(("Realism", "n/a", realism["skipped"]))
    else:
        features = realism["features"]
        counts = f"{realism['edited_faces']} edited vs {realism['reference_faces']} real reference faces"
        rows.append((f"Frechet distance ({features})", _number(realism["frechet_distance"]), f"{counts}; not ImageNet-Inception FID"))
        kernel = _number(realism["kernel_distance"], 4)
        if realism.get("kernel_distance_std") is not None:
            kernel += f" ± {_number(realism['kernel_distance_std'], 4)}"
        rows.append((f"Kernel distance, KID estimator ({features})", kernel, counts))
    speed = metrics["speed"]
    rows.append(("Speed", f"{_number(speed['faces_per_second'], 1)} faces/s", f"editing only, {speed['device']}, batches of {speed['batch_size']}"))
    return rows


def png_data_uri(pixels: np.ndarray) -> str:
    """An H x W x 3 uint8 image as a data: URI holding a PNG."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8), mode="RGB").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1200px; }
table.metrics { border-collapse: collapse; margin: 1em 0; }
table.metrics th, table.metrics td { border-bottom: 1px solid #ddd; padding: 0.35em 0.8em; text-align: left; }
table.metrics td.value { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.faces td { text-align: center; font-size: 0.8em; padding: 2px; vertical-align: top; }
table.faces img { display: block; image-rendering: auto; }
th.side { text-align: right; padding-right: 0.5em; font-weight: normal; color: #666; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; }
dt { color: #666; }
"""


def _faces_table(pairs: Sequence[FacePair], css_class: str) -> str:
    if not pairs:
        return "<p>No faces.</p>"
    width = max(pair.before.shape[1] for pair in pairs)
    shown = max(96, min(160, width))

    def cells(images):
        return "".join(f'<td><img src="{png_data_uri(image)}" width="{shown}" height="{shown}" alt="face"></td>' for image in images)

    captions = "".join(f"<td>{html.escape(pair.caption)}</td>" for pair in pairs)
    return (
        f'<table class="faces {css_class}">'
        f'<tr><th class="side">before</th>{cells(pair.before for pair in pairs)}</tr>'
        f'<tr><th class="side">after</th>{cells(pair.after for pair in pairs)}</tr>'
        f'<tr><th></th>{captions}</tr></table>'
    )


def render_report(metrics: dict[str, Any], sample: Sequence[FacePair], worst: Sequence[FacePair]) -> str:
    """The report as one HTML document (images inline)."""
    attribute = html.escape(str(metrics["attribute"]))
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td class=\"value\">{html.escape(value)}</td><td>{html.escape(note)}</td></tr>"
        for name, value, note in metric_rows(metrics)
    )
    details = {
        "Editor": metrics["editor"]["weights"],
        "Classifier": metrics["classifier"]["weights"],
        "Data": f"{metrics['data']['folder']} ({metrics['data']['kind']})",
        "Faces": f"{metrics['data']['source_faces']} source-side faces edited, {metrics['data']['reference_faces']} reference-side faces",
        "Size": f"{metrics['editor']['size']} px",
    }
    details_html = "".join(f"<dt>{html.escape(key)}</dt><dd>{html.escape(str(value))}</dd>" for key, value in details.items())
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>diat evaluate: {attribute}</title>'
        f"<style>{_STYLE}</style></head><body>"
        f"<h1>diat evaluate: {attribute}</h1>"
        f"<dl>{details_html}</dl>"
        "<h2>Metrics</h2>"
        f'<table class="metrics" id="metrics"><thead><tr><th>metric</th><th>value</th><th>how</th></tr></thead><tbody>{rows}</tbody></table>'
        "<h2>Before and after (fixed sample)</h2>"
        "<p>The first faces in the stable order of the photo names' hashes, the same on every run.</p>"
        f"{_faces_table(sample, 'sample')}"
        "<h2>Worst cases by identity distance</h2>"
        "<p>The edits farthest from their source on the identity network (distance; same person below "
        f"{metrics['identity']['threshold']}).</p>"
        f"{_faces_table(worst, 'worst')}"
        "</body></html>\n"
    )


def write_report(path: str | Path, metrics: dict[str, Any], sample: Sequence[FacePair], worst: Sequence[FacePair]) -> Path:
    """Write the self-contained HTML report to `path` (atomically); returns the path."""
    path = Path(path)
    write_text_atomic(path, render_report(metrics, sample, worst))
    return path
