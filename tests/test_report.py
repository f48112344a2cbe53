"""The HTML report: a self-contained page whose table and images a parser finds."""

from __future__ import annotations

import base64
import io
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
from PIL import Image

from diat_cli.report import (
    FacePair,
    metric_rows,
    png_data_uri,
    render_report,
    write_report,
)


def sample_metrics(**changes):
    metrics = {
        "attribute": "no-eyeglasses",
        "editor": {"weights": "runs/no-eyeglasses-a/transform.safetensors", "size": 64},
        "classifier": {"weights": "classifier.safetensors", "decision": "CelebA 'Eyeglasses' logit < 0", "held_out_accuracy": 0.9},
        "data": {"folder": "aligned/", "kind": "aligned folder, labels from list_attr_celeba.txt", "source_faces": 3, "reference_faces": 5},
        "attribute_success": {"edited": 0.75, "unedited": 0.05, "utkface_edited": None, "utkface_unedited": None},
        "identity": {
            "network": "dlib", "threshold": 0.6, "faces": 3, "mean_distance": 0.3125, "median_distance": 0.3, "share_kept": 1.0,
            "rank1": 2 / 3, "verification_edited": 0.5, "verification_unedited": 0.9, "verification_pairs": 12,
        },
        "outside_region": {"region": "eyes", "psnr_db": 31.234, "ssim": 0.951},
        "realism": {"features": "dlib ResNet stage-4 features, 256-D", "frechet_distance": 12.5, "kernel_distance": 0.0123,
                    "kernel_distance_std": 0.001, "edited_faces": 3, "reference_faces": 5},
        "speed": {"faces_per_second": 123.4, "device": "cpu", "batch_size": 32},
        "skin_tone": {
            "patches": "cheeks and forehead", "visible_delta_e": 5.0, "faces": 3, "mean_lightness": 60.0, "mean_delta_e": 3.456,
            "mean_delta_lightness": -1.0, "share_visible": 1 / 3,
            "darkest_third": {"faces": 1, "mean_lightness": 35.2, "mean_delta_e": 7.5, "mean_delta_lightness": -6.25, "share_visible": 1.0},
            "lightest_third": {"faces": 1, "mean_lightness": 80.1, "mean_delta_e": 1.0, "mean_delta_lightness": 0.5, "share_visible": 0.0},
        },
    }
    metrics.update(changes)
    return metrics


def faces(count: int, size: int = 16, seed: int = 0) -> list[FacePair]:
    rng = np.random.default_rng(seed)
    return [
        FacePair(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), rng.integers(0, 256, (size, size, 3), dtype=np.uint8), f"face {i}: d=0.{i}")
        for i in range(count)
    ]


class ReportParser(HTMLParser):
    """Collects the metrics table's rows and every image's source."""

    def __init__(self):
        super().__init__()
        self.rows: list[list[str]] = []
        self.images: list[str] = []
        self._in_metrics = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and attrs.get("id") == "metrics":
            self._in_metrics = True
        elif tag == "tr" and self._in_metrics:
            self.rows.append([])
        elif tag in ("td", "th") and self._in_metrics:
            self._cell = []
        elif tag == "img":
            self.images.append(attrs["src"])

    def handle_endtag(self, tag):
        if tag == "table":
            self._in_metrics = False
        elif tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def test_report_holds_the_table_and_the_images(tmp_path):
    sample, worst = faces(4), faces(2, seed=1)
    path = write_report(tmp_path / "report.html", sample_metrics(), sample, worst)
    parser = ReportParser()
    parser.feed(path.read_text(encoding="utf-8"))
    table = {row[0]: row[1:] for row in parser.rows[1:]}
    assert parser.rows[0] == ["metric", "value", "how"]
    assert table["Attribute success (edited faces)"][0] == "75.0%"
    assert table["Attribute success floor (unedited source faces)"][0] == "5.0%"
    assert table["Rank-1 identification"][0] == "66.7%"
    assert table["Identity distance, mean (face vs its edit)"][0] == "0.312"
    assert table["PSNR outside the eyes region"][0] == "31.23 dB"
    assert "not ImageNet-Inception FID" in table["Frechet distance (dlib ResNet stage-4 features, 256-D)"][1]
    assert table["Speed"][0] == "123.4 faces/s"
    assert table["Skin tone shift, mean delta E"] == ["3.46", "CIELAB, mean colour of cheek and forehead patches; 33.3% of faces over 5"]
    assert table["Skin tone shift, darkest third of faces"] == ["7.50 (L* -6.2)", "1 faces of mean L* 35; 100.0% over 5"]
    assert table["Skin tone shift, lightest third of faces"][0] == "1.00 (L* +0.5)"

    assert len(parser.images) == 2 * (4 + 2)  # before and after, sample and worst cases
    for source, pair in zip(parser.images[:4], sample):  # the first row of the sample grid: the faces before editing
        assert source.startswith("data:image/png;base64,")
        decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1]))))
        assert np.array_equal(decoded, pair.before)
    decoded_after = np.asarray(Image.open(io.BytesIO(base64.b64decode(parser.images[4].split(",", 1)[1]))))
    assert np.array_equal(decoded_after, sample[0].after)


def test_report_needs_no_server_and_escapes_text(tmp_path):
    metrics = sample_metrics(attribute="<script>alert(1)</script>")
    text = render_report(metrics, faces(1), [])
    assert "<script>alert" not in text and "&lt;script&gt;" in text
    assert "http://" not in text and "https://" not in text  # nothing to fetch
    assert "No faces." in text


def test_rows_for_missing_parts():
    metrics = sample_metrics(outside_region=None, realism={"skipped": "no reference faces"})
    metrics["identity"].update(verification_pairs=0, rank1=None)
    names = {name: value for name, value, _ in metric_rows(metrics)}
    assert not any("PSNR" in name for name in names) and not any("Verification" in name for name in names)
    assert names["Realism"] == "n/a" and names["Rank-1 identification"] == "n/a"
    del metrics["skin_tone"]  # reports written before it was measured
    assert not any("Skin tone" in name for name, _, _ in metric_rows(metrics))
    metrics["attribute_success"].update(utkface_edited=0.5, utkface_unedited=0.1)
    names = {name: value for name, value, _ in metric_rows(metrics)}
    assert names["Attribute success, UTKFace heads (edited)"] == "50.0%"


def test_png_data_uri_round_trip():
    pixels = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    uri = png_data_uri(pixels)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))), pixels)


def test_core_modules_do_not_import_the_cli_libraries():
    modules = "diat_cli.metrics, diat_cli.report, diat_cli.classifier, diat_cli.pipelines.evaluate, diat_cli.pipelines.train_classifier, diat_cli.train.classifier"
    code = f"import sys, {modules}; assert not {{'typer', 'rich'}} & set(sys.modules), sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)
