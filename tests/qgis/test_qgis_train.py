"""sam_cd:train through Processing: a tiny run writes a checkpoint the dock table can list."""

from __future__ import annotations

from pathlib import Path

import processing
import pytest
from qgis.core import QgsProcessingException, QgsProcessingFeedback

from sam_cd_plugin.gui.checkpoint_table import read_entry

pytestmark = pytest.mark.usefixtures("sam_cd_provider")
ALGORITHM = "sam_cd:train"


def tiny_run(data: Path, out: Path, **extra) -> dict:
    return {"DATA": str(data), "METHOD": "sam-cem-cd", "ENCODER": "fastsam-s", "DELTA": 0.2, "EPOCHS": 2, "LR": 0.001,
            "DEVICE": "cpu", "OPTIMIZER": "adamw", "INPUT_SIZE": 64, "BATCH_SIZE": 4, "INCLUDE": "train_36*",
            "OUTPUT": str(out), **extra}


class Recording(QgsProcessingFeedback):
    def __init__(self) -> None:
        super().__init__()
        self.progress_reports: list[float] = []
        self.progressChanged.connect(self.progress_reports.append)


def test_train_writes_a_checkpoint_with_its_delta(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "model_d02.pt"
    feedback = Recording()
    results = processing.run(ALGORITHM, tiny_run(shared_data / "LEVIR-CD", out), feedback=feedback)
    assert results["OUTPUT"] == str(out) and out.is_file()
    assert results["DEVICE_USED"].startswith("CPU")
    assert feedback.progress_reports and max(feedback.progress_reports) == pytest.approx(100.0)
    entry = read_entry(out, "folder")  # as the dock's δ table shows it
    assert entry.ok, entry.error
    assert (entry.method, entry.encoder, entry.delta, entry.training_data) == ("sam-cem-cd", "fastsam-s", 0.2, ("LEVIR-CD",))


def test_cancel_writes_no_checkpoint(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "cancelled.pt"
    feedback = QgsProcessingFeedback()
    feedback.cancel()
    with pytest.raises(QgsProcessingException, match="[Cc]ancel"):
        processing.run(ALGORITHM, tiny_run(shared_data / "LEVIR-CD", out), feedback=feedback)
    assert not out.exists()


def test_bad_settings_are_clear_errors(shared_data: Path, tmp_path: Path) -> None:
    with pytest.raises(QgsProcessingException, match="multiple of 32"):
        processing.run(ALGORITHM, tiny_run(shared_data / "LEVIR-CD", tmp_path / "m.pt", INPUT_SIZE=100))
    with pytest.raises(QgsProcessingException, match=r"\.pt"):
        processing.run(ALGORITHM, tiny_run(shared_data / "LEVIR-CD", tmp_path / "m.txt"))


def test_options_page_default_device(clean_samcd_settings) -> None:  # noqa: ARG001
    """The provider's options are registered for the options page and drive the defaults."""
    from processing.core.ProcessingConfig import ProcessingConfig
    from qgis.core import QgsApplication

    from sam_cd_plugin.gui.settings import SamCdSettings
    from sam_cd_plugin.processing import options

    assert options.DEVICE in ProcessingConfig.settings and options.CHECKPOINT_FOLDER in ProcessingConfig.settings
    ProcessingConfig.setSettingValue(options.DEVICE, options.DEVICE_CHOICES.index("cpu"))  # as the options page
    ProcessingConfig.settings[options.DEVICE].save()
    try:
        algorithm = QgsApplication.processingRegistry().createAlgorithmById(ALGORITHM)
        assert algorithm.parameterDefinition("DEVICE").defaultValue() == "cpu"
        assert SamCdSettings().device() == "cpu"  # the dock starts from it too
    finally:
        ProcessingConfig.setSettingValue(options.DEVICE, 0)
