"""The dock driven like a user: layers, δ table, prompts, weights, device, Detect and Cancel."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from pytest_qgis.utils import process_events, wait_until
from qgis.core import Qgis, QgsProject, QgsRasterLayer, QgsVectorLayer
from qgis.PyQt.QtCore import Qt, QTimer, QUrl

from sam_cd_plugin.gui import weights_download
from sam_cd_plugin.gui.checkpoint_table import COLUMNS
from sam_cd_plugin.gui.dock_widget import SamCdDockWidget
from sam_cd_plugin.gui.settings import SamCdSettings, weights_dir
from sam_cd_plugin.gui.weights_download import WeightsDownload, official_weights
from sam_cd_plugin.paths import default_checkpoint
from samcd_qgis_helpers import checkpoint_with_meta, polygonise_label, settle, upscaled_copy

pytestmark = pytest.mark.usefixtures("sam_cd_provider")

RUN_TIMEOUT_MS = 180_000
F1_COLUMN = COLUMNS.index("F1")


@pytest.fixture
def project(qgis_new_project):
    yield qgis_new_project
    qgis_new_project.clear()


def add_raster(project: QgsProject, path: Path, name: str) -> str:
    """Add a raster layer the way a user does (on top of the layer tree); returns its id only."""
    layer = QgsRasterLayer(str(path), name)
    assert layer.isValid(), path
    project.addMapLayer(layer)
    layer_id = layer.id()
    del layer
    return layer_id


def table_rows(dock: SamCdDockWidget) -> list[dict[str, str]]:
    """The table as the user sees it (sorted view), one dict per row."""
    proxy = dock.checkpoint_proxy
    return [{COLUMNS[c]: proxy.index(r, c).data() or "" for c in range(len(COLUMNS))} for r in range(proxy.rowCount())]


def click_row(dock: SamCdDockWidget, file_name: str) -> None:
    rows = [r for r, row in enumerate(table_rows(dock)) if row["File"] == file_name]
    assert rows, f"{file_name} not in the table"
    dock.checkpoint_view.selectRow(rows[0])


def messages(iface, level: Qgis.MessageLevel) -> list[str]:
    return iface.messageBar().get_messages(level)


def wait_for_run(dock: SamCdDockWidget) -> None:
    assert wait_until(lambda: dock.run is not None and not dock.run.running, timeout_milliseconds=RUN_TIMEOUT_MS)
    process_events()


def test_layer_pickers_default_to_the_two_newest_rasters(make_dock, project, norcia) -> None:
    add_raster(project, norcia.label, "oldest")
    before_id = add_raster(project, norcia.before, "before 2015")
    dock = make_dock()
    after_id = add_raster(project, norcia.after, "after 2017")  # added while the dock is open
    assert dock.before_combo.currentLayer().id() == before_id
    assert dock.after_combo.currentLayer().id() == after_id
    # raster layers only
    assert dock.before_combo.filters() == dock.after_combo.filters()
    assert all(isinstance(dock.before_combo.layer(i), (QgsRasterLayer, type(None))) for i in range(dock.before_combo.count()))


def test_detect_adds_styled_layers_in_a_group(make_dock, project, norcia, tiny_checkpoint, clean_samcd_settings,
                                              qgis_iface, tmp_path) -> None:
    user_folder = clean_samcd_settings
    checkpoint_with_meta(tiny_checkpoint, user_folder / "tiny_d03.pt", metrics={"val": {"f1": 0.61, "iou": 0.44}})
    checkpoint_with_meta(tiny_checkpoint, user_folder / "prompted.pt", method="sam-cd", prompts=["building"])
    before_id = add_raster(project, norcia.before, "before 2015")
    after_id = add_raster(project, norcia.after, "after 2017")
    out_dir = tmp_path / "outputs"
    dock = make_dock()

    rows = {row["File"]: row for row in table_rows(dock)}
    assert set(rows) >= {default_checkpoint().name, "tiny_d03.pt", "prompted.pt"}
    assert rows["tiny_d03.pt"]["δ"] == "0.30" and rows["tiny_d03.pt"]["F1"] == "0.610"
    assert rows[default_checkpoint().name]["F1"] == "0.494"  # its validation tile's F1
    assert rows[default_checkpoint().name]["Training data"] == "LEVIR-CD, LEVIR-CD-1024, WHU-CD"

    # prompts: usable for the SAM-CD checkpoint only, edited there, remembered
    click_row(dock, "prompted.pt")
    assert dock.prompts_editor.isEnabled()
    dock.prompts_editor.entry.setText("road")
    dock.prompts_editor.add_button.click()
    assert dock.prompts_editor.prompts() == ["building", "road"]
    assert SamCdSettings().prompts() == ["building", "road"]
    click_row(dock, "tiny_d03.pt")
    assert not dock.prompts_editor.isEnabled()
    assert "sam-cem-cd" in dock.prompts_editor.toolTip() and "SAM-CD" in dock.prompts_editor.toolTip()

    dock.before_combo.setLayer(project.mapLayer(before_id))
    dock.after_combo.setLayer(project.mapLayer(after_id))
    dock.device_combo.setCurrentText("cpu")
    dock.threshold_spin.setValue(0.4)
    dock.output_widget.setFilePath(str(out_dir))
    polygons = dock.polygons_check.isEnabled()  # when sam_cd:detectchanges has OUTPUT_POLYGONS
    dock.polygons_check.setChecked(polygons)
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(20)
    dock.detect_button.click()
    assert dock.run is not None and not dock.detect_button.isEnabled() and dock.cancel_button.isEnabled()
    assert not dock.progress_bar.isHidden()
    assert dock.run.parameters["CHECKPOINT"] == str(user_folder / "tiny_d03.pt")
    assert dock.run.parameters["THRESHOLD"] == pytest.approx(0.4)
    wait_for_run(dock)
    timer.stop()
    assert len(ticks) > 3  # the GUI thread kept running its event loop during the detection

    assert not messages(qgis_iface, Qgis.MessageLevel.Critical)
    assert any("Detection finished" in m for m in messages(qgis_iface, Qgis.MessageLevel.Success))
    group = project.layerTreeRoot().findGroup("Changes before 2015 → after 2017")
    assert group is not None
    layers = {node.layer().name().split(" (")[0]: node.layer() for node in group.findLayers()}
    assert sorted(layers) == (["Change mask", "Change polygons"] if polygons else ["Change mask"])
    kind, source = layers["Change mask"].renderer().type(), Path(layers["Change mask"].source())
    if polygons:
        assert layers["Change polygons"].isValid() and Path(layers["Change polygons"].source().split("|")[0]).parent == out_dir
    del layers, group
    assert kind == "paletted"  # the bundled change-mask style
    assert source.parent == out_dir and source.suffix == ".tif" and source.is_file()
    assert dock.detect_button.isEnabled() and dock.progress_bar.isHidden()
    assert dock.after_combo.currentLayer().id() == after_id  # the new result rasters did not replace the pair

    # the choices are remembered by a new dock
    again = make_dock()
    assert again.selected_entry().path == user_folder / "tiny_d03.pt"
    assert again.threshold_spin.value() == pytest.approx(0.4)
    assert again.device_combo.currentText() == "cpu"
    assert again.output_widget.filePath() == str(out_dir)


def test_detect_clicked_before_the_table_is_filled_in_runs_once_it_is(make_dock, project, norcia, tiny_checkpoint,
                                                                     clean_samcd_settings, qgis_iface, tmp_path) -> None:
    """A new user clicks Detect at once: the run waits for the table, then uses its best checkpoint."""
    best = checkpoint_with_meta(tiny_checkpoint, clean_samcd_settings / "tiny.pt", metrics={"val": {"f1": 0.9}})
    add_raster(project, norcia.before, "before")
    add_raster(project, norcia.after, "after")
    settings = SamCdSettings()
    settings.set_device("cpu")
    settings.set_output_folder(tmp_path / "outputs")
    dock = make_dock(wait=False)
    assert dock.selected_entry() is not None and dock.selected_entry().checking
    dock.detect_button.click()  # at once, while the rows still say "checking…"
    assert dock.run is None
    assert any("starts when its row is filled in" in m for m in messages(qgis_iface, Qgis.MessageLevel.Info))
    wait_for_run(dock)
    assert dock.selected_entry().path == best  # best F1 once the scores are known
    assert dock.run.parameters["CHECKPOINT"] == str(best)
    assert any("Detection finished" in m for m in messages(qgis_iface, Qgis.MessageLevel.Success))
    assert not messages(qgis_iface, Qgis.MessageLevel.Critical)


def test_cancel_a_long_run_leaves_no_layer_and_no_file(make_dock, project, norcia, tiny_checkpoint,
                                                       clean_samcd_settings, qgis_iface, tmp_path) -> None:
    big_before = upscaled_copy(norcia.before, tmp_path / "big_before.tif", 4)
    big_after = upscaled_copy(norcia.after, tmp_path / "big_after.tif", 4)
    checkpoint_with_meta(tiny_checkpoint, clean_samcd_settings / "tiny.pt")
    add_raster(project, big_before, "big before")
    add_raster(project, big_after, "big after")
    layers_before = set(project.mapLayers())
    out_dir = tmp_path / "outputs"
    out_dir.mkdir()
    dock = make_dock()
    click_row(dock, "tiny.pt")
    dock.device_combo.setCurrentText("cpu")
    dock.output_widget.setFilePath(str(out_dir))

    dock.detect_button.click()
    assert wait_until(lambda: dock.progress_bar.value() > 0, timeout_milliseconds=RUN_TIMEOUT_MS)
    assert dock.run.running
    dock.cancel_button.click()
    wait_for_run(dock)

    assert set(project.mapLayers()) == layers_before
    assert sorted(out_dir.iterdir()) == []  # no mask, partial file or style
    assert any("cancelled" in m for m in messages(qgis_iface, Qgis.MessageLevel.Info))
    assert not messages(qgis_iface, Qgis.MessageLevel.Critical)
    assert dock.detect_button.isEnabled() and not dock.cancel_button.isEnabled()


def test_a_broken_checkpoint_gets_a_row_with_the_reason(make_dock, project, norcia, clean_samcd_settings,
                                                        qgis_iface) -> None:
    (clean_samcd_settings / "broken.pt").write_bytes(b"this is not a checkpoint")
    add_raster(project, norcia.before, "before")
    add_raster(project, norcia.after, "after")
    dock = make_dock()
    rows = {row["File"]: row for row in table_rows(dock)}
    assert rows["broken.pt"]["Method"] == "unreadable"
    assert "Cannot load checkpoint broken.pt" in rows["broken.pt"]["Notes"]
    assert rows[default_checkpoint().name]["Method"] == "sam-cem-cd (demo)"  # the other rows still work

    click_row(dock, "broken.pt")
    dock.detect_button.click()
    assert dock.run is None
    warnings = messages(qgis_iface, Qgis.MessageLevel.Warning)
    assert any("broken.pt cannot be used" in m for m in warnings)


def test_table_sorts_by_delta_and_f1(make_dock, tiny_checkpoint, clean_samcd_settings) -> None:
    folder = clean_samcd_settings
    for name, delta, f1 in (("d01.pt", 0.1, 0.70), ("d05.pt", 0.5, 0.80), ("d03.pt", 0.3, 0.75)):
        checkpoint_with_meta(tiny_checkpoint, folder / name, delta=delta, metrics={"val": {"f1": f1, "iou": f1 - 0.2}})
    dock = make_dock()
    ours = ("d01.pt", "d03.pt", "d05.pt")

    def order() -> list[str]:
        return [row["File"] for row in table_rows(dock) if row["File"] in ours]

    dock.checkpoint_view.sortByColumn(COLUMNS.index("δ"), Qt.SortOrder.AscendingOrder)
    assert order() == ["d01.pt", "d03.pt", "d05.pt"]
    dock.checkpoint_view.sortByColumn(F1_COLUMN, Qt.SortOrder.DescendingOrder)
    assert order() == ["d05.pt", "d03.pt", "d01.pt"]


def test_weights_status_found_missing_wrong(make_dock, fastsam_s_file, tiny_checkpoint, tmp_path) -> None:
    dock = make_dock()
    panel = dock.weights_panel
    status = panel.rows["fastsam-s"].status
    assert status.text() == "missing"  # nothing chosen yet

    panel.rows["fastsam-s"].picker.setFilePath(str(tmp_path / "nowhere" / "FastSAM-s.pt"))
    assert status.text() == "missing" and "does not exist" in status.toolTip()

    text_file = tmp_path / "notes.pt"
    text_file.write_text("hello")
    panel.rows["fastsam-s"].picker.setFilePath(str(text_file))
    assert status.text() == "checking…"
    settle(dock)
    assert status.text() == "wrong model"

    panel.rows["fastsam-x"].picker.setFilePath(str(fastsam_s_file))  # FastSAM-s file on the FastSAM-x row
    settle(dock)
    assert panel.rows["fastsam-x"].status.text() == "wrong model"
    assert "fastsam-x" in panel.rows["fastsam-x"].status.toolTip()

    panel.rows["fastsam-s"].picker.setFilePath(str(fastsam_s_file))
    settle(dock)
    assert status.text() == "found"
    assert SamCdSettings().weights_path("fastsam-s") == str(fastsam_s_file)  # remembered


def test_download_checks_sha256_and_explains_offline(make_dock, fastsam_s_file, tmp_path, monkeypatch) -> None:
    url = QUrl.fromLocalFile(str(fastsam_s_file)).toString()
    digest = hashlib.sha256(fastsam_s_file.read_bytes()).hexdigest()
    item = replace(official_weights("fastsam-s"), url=url, sha256=digest)

    def download(candidate, folder: Path) -> tuple[list[str], list[str]]:
        ok, failed = [], []
        job = WeightsDownload(candidate, folder)
        job.succeeded.connect(ok.append)
        job.failed.connect(failed.append)
        job.start()
        assert wait_until(lambda: ok or failed, timeout_milliseconds=30_000)
        return ok, failed

    ok, failed = download(item, tmp_path / "good")
    assert not failed and ok == [str(tmp_path / "good" / "FastSAM-s.pt")]
    assert (tmp_path / "good" / "FastSAM-s.pt").read_bytes() == fastsam_s_file.read_bytes()

    ok, failed = download(replace(item, sha256="0" * 64), tmp_path / "bad")
    assert not ok and "sha256" in failed[0]
    assert sorted((tmp_path / "bad").iterdir()) == []  # no file, no .part

    with monkeypatch.context() as patch:  # a file larger than any official one is stopped and deleted
        patch.setattr(weights_download, "MAX_DOWNLOAD_BYTES", 1000)
        ok, failed = download(replace(item, sha256=None), tmp_path / "huge")
    assert not ok and "larger than" in failed[0]
    assert sorted((tmp_path / "huge").iterdir()) == []

    ok, failed = download(replace(item, url="https://127.0.0.1:9/FastSAM-s.pt"), tmp_path / "offline")
    assert not ok and "offline" in failed[0] and "web browser" in failed[0] and item.label in failed[0]
    assert sorted((tmp_path / "offline").iterdir()) == []

    # through the panel: the file lands in the user's data folder and its row says "found"
    dock = make_dock()
    target = weights_dir() / "FastSAM-s.pt"
    try:
        dock.weights_panel.start_download("fastsam-s", url=url)
        assert not dock.weights_panel.progress.isHidden()  # shown while it runs
        assert wait_until(lambda: dock.weights_panel.progress.isHidden(), timeout_milliseconds=30_000)
        settle(dock)
        assert target.is_file()
        assert dock.weights_panel.rows["fastsam-s"].status.text() == "found"
    finally:
        target.unlink(missing_ok=True)


def test_device_line(make_dock) -> None:
    import torch

    dock = make_dock()
    dock.device_combo.setCurrentText("cpu")
    settle(dock)
    assert dock.device_label.text().startswith("CPU (") and "threads" in dock.device_label.text()
    dock.device_combo.setCurrentText("cuda")
    assert dock.device_label.text() == "checking…"
    settle(dock)
    if torch.cuda.is_available():
        assert torch.cuda.get_device_name(0) in dock.device_label.text()
    else:
        assert "CUDA was asked for but is not available" in dock.device_label.text()
        assert dock.device_label.text().startswith("⚠")
    assert SamCdSettings().device() == "cuda"


def test_advanced_opens_the_prefilled_processing_dialog(make_dock, iface_browser, project, norcia, tiny_checkpoint,
                                                        clean_samcd_settings) -> None:
    checkpoint_with_meta(tiny_checkpoint, clean_samcd_settings / "tiny.pt")
    add_raster(project, norcia.before, "before")
    add_raster(project, norcia.after, "after")
    dock = make_dock()
    click_row(dock, "tiny.pt")
    dock.threshold_spin.setValue(0.7)
    dock.advanced_button.click()
    dialog = dock.advanced_dialog
    assert dialog is not None and dialog.isVisible()
    assert dialog.algorithm().id() == "sam_cd:detectchanges"
    values = dialog.mainWidget().createProcessingParameters() if hasattr(dialog.mainWidget(), "createProcessingParameters") \
        else dialog.createProcessingParameters()
    assert values["THRESHOLD"] == pytest.approx(0.7)
    assert Path(values["CHECKPOINT"]) == clean_samcd_settings / "tiny.pt"
    del dialog, values
    dock.close_advanced_dialog()


def test_train_on_this_area_opens_the_prefilled_dialog_and_lists_the_result(
        make_dock, iface_browser, project, norcia, tiny_checkpoint, clean_samcd_settings, tmp_path) -> None:
    """"Train on this area…": the dialog starts from the dock's layers and selected checkpoint and writes
    into the checkpoint folder; once it is closed, the trained checkpoint is a row of the table."""
    checkpoint_with_meta(tiny_checkpoint, clean_samcd_settings / "tiny.pt")
    changes = QgsVectorLayer(str(polygonise_label(norcia.label, tmp_path / "changes.gpkg")), "my changes")
    assert changes.isValid()
    project.addMapLayer(changes)
    del changes
    before_id = add_raster(project, norcia.before, "before")
    after_id = add_raster(project, norcia.after, "after")
    dock = make_dock()
    click_row(dock, "tiny.pt")
    dock.train_button.click()
    dialog = dock.advanced_dialog
    assert dialog is not None and dialog.isVisible()
    assert dialog.algorithm().id() == "sam_cd:trainfromlayers"
    values = dialog.mainWidget().createProcessingParameters() if hasattr(dialog.mainWidget(), "createProcessingParameters") \
        else dialog.createProcessingParameters()
    layer_ids = {key: getattr(values[key], "id", lambda v=values[key]: v)() for key in ("BEFORE", "AFTER")}
    sources = {key: project.mapLayer(value).source() if project.mapLayer(value) else str(value)
               for key, value in layer_ids.items()}
    assert sources == {"BEFORE": project.mapLayer(before_id).source(), "AFTER": project.mapLayer(after_id).source()}
    assert Path(values["CHECKPOINT"]) == clean_samcd_settings / "tiny.pt"
    output = Path(values["OUTPUT"])
    assert output.parent == clean_samcd_settings and output.suffix == ".pt"
    del values
    # what the run writes (a real run: tests/qgis/test_qgis_train_area.py), then the user closes the dialog
    checkpoint_with_meta(tiny_checkpoint, output, training={"data": ["area: my town"]},
                         metrics={"val": {"f1": 0.61, "iou": 0.44}})
    dialog.close()
    del dialog
    settle(dock)
    rows = {row["File"]: row for row in table_rows(dock)}
    assert rows[output.name]["Training data"] == "area: my town"
    assert rows[output.name]["F1"].startswith("0.61")
    dock.close_advanced_dialog()


def test_a_failed_run_is_explained_in_the_message_bar(make_dock, project, norcia, shared_data: Path,
                                                      tiny_checkpoint, clean_samcd_settings, qgis_iface,
                                                      tmp_path) -> None:
    """A georeferenced before raster and a plain PNG after it cannot be aligned: say so, add nothing."""
    checkpoint_with_meta(tiny_checkpoint, clean_samcd_settings / "tiny.pt")
    add_raster(project, norcia.before, "georeferenced")
    png = tmp_path / "no_crs.png"  # a copy: QGIS writes .aux.xml next to the rasters it loads
    shutil.copyfile(shared_data / "LEVIR-CD" / "B" / "train_36_0512_0512.png", png)
    add_raster(project, png, "no crs")
    layers_before = set(project.mapLayers())
    dock = make_dock()
    click_row(dock, "tiny.pt")
    dock.device_combo.setCurrentText("cpu")
    dock.output_widget.setFilePath(str(tmp_path / "outputs"))
    dock.detect_button.click()
    wait_for_run(dock)
    critical = messages(qgis_iface, Qgis.MessageLevel.Critical)
    assert len(critical) == 1 and "Detection failed" in critical[0]
    assert "coordinate reference system" in critical[0] and "Traceback" not in critical[0]
    assert set(project.mapLayers()) == layers_before
    assert sorted((tmp_path / "outputs").iterdir()) == []


def test_the_bundled_model_is_marked_as_a_demonstration_model(make_dock, tiny_checkpoint,
                                                               clean_samcd_settings) -> None:
    shutil.copy(tiny_checkpoint, clean_samcd_settings / "not_demo.pt")
    dock = make_dock()
    rows = {row["File"]: row for row in table_rows(dock)}
    bundled = rows[default_checkpoint().name]
    assert bundled["Notes"].split("; ")[0] == "demo"
    assert bundled["Method"].endswith("(demo)")  # visible without scrolling the narrow dock
    assert "demo" not in rows["not_demo.pt"]["Notes"]  # a model whose metadata does not say so
    proxy = dock.checkpoint_proxy
    row = next(r for r in range(proxy.rowCount())
               if proxy.index(r, COLUMNS.index("File")).data() == default_checkpoint().name)
    tooltip = proxy.index(row, COLUMNS.index("Method")).data(Qt.ItemDataRole.ToolTipRole)
    assert "Demonstration model: trained on 8 image pairs from random initialisation" in tooltip
    assert "train or pick a model for real use" in tooltip
