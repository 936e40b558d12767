"""Processing algorithm ``sam_cd:train``: a dataset folder → a sam-cd checkpoint.

Thin adapter over the engine service's ``train``: Processing parameters in, a ``TrainRequest``
(the fields of ``engine.training.TrainConfig``), the engine's progress reported per epoch and
Processing's cancel polled every batch. Meant for
users with a CUDA GPU; it runs on the CPU too, slowly.
"""

from __future__ import annotations

from typing import Any

from qgis.core import (
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputString,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from .algorithm_base import SamCdAlgorithm
from ..engine.requests import TrainRequest
from .compat import FILE_BEHAVIOR_FILE, FILE_BEHAVIOR_FOLDER, FLAG_ADVANCED, NUMBER_DOUBLE, NUMBER_INTEGER
from .options import DEVICE_CHOICES, default_device

__all__ = ["ENCODERS", "METHODS", "TrainModelAlgorithm"]

METHODS = ["sam-cem-cd", "sam2-cd", "sam-cd"]
ENCODERS = ["fastsam-s", "fastsam-x", "sam2-t", "sam2-s", "sam2-b+", "mobilesam"]
OPTIMIZERS = ["sgd", "adamw"]

class TrainModelAlgorithm(SamCdAlgorithm):
    """Train a change-detection checkpoint on a LEVIR-CD-layout dataset."""

    DATA = "DATA"
    METHOD = "METHOD"
    ENCODER = "ENCODER"
    ENCODER_WEIGHTS = "ENCODER_WEIGHTS"
    DELTA = "DELTA"
    EPOCHS = "EPOCHS"
    LR = "LR"
    DEVICE = "DEVICE"
    OPTIMIZER = "OPTIMIZER"
    INPUT_SIZE = "INPUT_SIZE"
    BATCH_SIZE = "BATCH_SIZE"
    INCLUDE = "INCLUDE"
    OUTPUT = "OUTPUT"
    DEVICE_USED = "DEVICE_USED"

    NAME = "train"
    DISPLAY_NAME = "Train a change-detection model"
    GROUP = "Training"
    GROUP_ID = "training"
    TAGS = "train,training,checkpoint,delta,cem,fastsam,sam2,mobilesam,gpu,dataset,levir"

    def shortHelpString(self) -> str:  # noqa: N802
        return self.tr(
            "<p>Trains a change-detection checkpoint (.pt) that <i>Detect changes</i> and the "
            "dock can use. Best with a CUDA GPU: on a CPU even small runs take long.</p>"
            "<p><b>Dataset folder</b>: LEVIR-CD layout, sub-folders <i>A</i> (before), <i>B</i> "
            "(after) and <i>label</i> (0/255 or 0/1) with matching file names. <b>Include</b> "
            "optionally restricts the pairs by file-name patterns (comma-separated, e.g. "
            "train_*).</p>"
            "<p><b>Method</b>: sam-cem-cd (default, light), sam2-cd or sam-cd. <b>Encoder</b>: "
            "the SAM-family backbone; give its official <b>weights file</b> (e.g. FastSAM-s.pt) "
            "for real use, otherwise it starts from random weights. <b>δ</b>: CEM drop ratio, the "
            "share of unchanged pixels dropped from each batch (higher: more recall, more false "
            "alarms; 0.3 was best in the paper). The checkpoint stores δ, the training data and "
            "the scores, which the dock's checkpoint table shows.</p>"
            "<p>Cancelling stops after the current batch; the checkpoint keeps the best finished epoch "
            "(if any) and the run can be resumed from the command line (<code>train --resume</code>).</p>"
        )

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:  # noqa: N802, ARG002
        self.addParameter(QgsProcessingParameterFile(self.DATA, self.tr("Dataset folder (A/, B/, label/)"),
                                                     behavior=FILE_BEHAVIOR_FOLDER))
        self.addParameter(QgsProcessingParameterEnum(self.METHOD, self.tr("Method"), options=METHODS,
                                                     defaultValue=METHODS[0], usesStaticStrings=True))
        self.addParameter(QgsProcessingParameterEnum(self.ENCODER, self.tr("Encoder"), options=ENCODERS,
                                                     defaultValue=ENCODERS[0], usesStaticStrings=True))
        self.addParameter(QgsProcessingParameterFile(
            self.ENCODER_WEIGHTS, self.tr("Encoder weights file (official, e.g. FastSAM-s.pt; empty: random init)"),
            behavior=FILE_BEHAVIOR_FILE, optional=True, fileFilter="PyTorch weights (*.pt *.pth);;All files (*)"))
        self.addParameter(QgsProcessingParameterNumber(self.DELTA, self.tr("CEM drop ratio δ"), type=NUMBER_DOUBLE,
                                                       defaultValue=0.3, minValue=0.0, maxValue=0.99))
        self.addParameter(QgsProcessingParameterNumber(self.EPOCHS, self.tr("Epochs"), type=NUMBER_INTEGER,
                                                       defaultValue=20, minValue=1))
        self.addParameter(QgsProcessingParameterNumber(self.LR, self.tr("Learning rate"), type=NUMBER_DOUBLE,
                                                       defaultValue=0.01, minValue=1e-7, maxValue=10.0))
        self.addParameter(QgsProcessingParameterEnum(self.DEVICE, self.tr("Device"), options=list(DEVICE_CHOICES),
                                                     defaultValue=default_device(), usesStaticStrings=True))
        advanced = [
            QgsProcessingParameterEnum(self.OPTIMIZER, self.tr("Optimizer"), options=OPTIMIZERS,
                                       defaultValue="sgd", usesStaticStrings=True),
            QgsProcessingParameterNumber(self.INPUT_SIZE, self.tr("Crop size in pixels (multiple of 32)"),
                                         type=NUMBER_INTEGER, defaultValue=256, minValue=64),
            QgsProcessingParameterNumber(self.BATCH_SIZE, self.tr("Batch size"), type=NUMBER_INTEGER,
                                         defaultValue=4, minValue=1),
            QgsProcessingParameterString(self.INCLUDE, self.tr("Only pairs matching (e.g. train_*,val_*)"),
                                         defaultValue="", optional=True),
        ]
        for param in advanced:
            param.setFlags(param.flags() | FLAG_ADVANCED)
            self.addParameter(param)
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT, self.tr("Checkpoint"), self.tr("sam-cd checkpoints (*.pt)")))
        self.addOutput(QgsProcessingOutputString(self.DEVICE_USED, self.tr("Device used")))

    def processAlgorithm(  # noqa: N802
        self, parameters: dict[str, Any], context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        out = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        if not out.lower().endswith(".pt"):
            raise QgsProcessingException(f"{self.OUTPUT}: checkpoints are .pt files; got '{out}'.")
        weights = self.parameterAsFile(parameters, self.ENCODER_WEIGHTS, context)
        include = [p.strip() for p in self.parameterAsString(parameters, self.INCLUDE, context).split(",") if p.strip()]
        device = self.parameterAsEnumString(parameters, self.DEVICE, context) or "auto"
        config = dict(
            data=[self.parameterAsFile(parameters, self.DATA, context)],
            out=out,
            include=include,
            method=self.parameterAsEnumString(parameters, self.METHOD, context),
            encoder=self.parameterAsEnumString(parameters, self.ENCODER, context),
            encoder_weights=weights or None,
            delta=self.parameterAsDouble(parameters, self.DELTA, context),
            epochs=self.parameterAsInt(parameters, self.EPOCHS, context),
            lr=self.parameterAsDouble(parameters, self.LR, context),
            optimizer=self.parameterAsEnumString(parameters, self.OPTIMIZER, context) or "sgd",
            input_size=self.parameterAsInt(parameters, self.INPUT_SIZE, context),
            batch_size=self.parameterAsInt(parameters, self.BATCH_SIZE, context),
            device=device,
        )
        result = self.run_engine("train", TrainRequest(config), feedback)
        if device == "cuda" and not result["device"].startswith("CUDA"):
            feedback.pushWarning("CUDA was requested but is not available; training ran on the CPU.")
        return {self.OUTPUT: result["path"], self.DEVICE_USED: result["device"]}
