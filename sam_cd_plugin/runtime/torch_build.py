"""Which torch build the runtime installs, and from which index.

The rule (a pure function of the OS and ``nvidia-smi``'s answer, :func:`choose_torch_build`):

1. macOS: PyPI's torch (CPU plus Apple's MPS); CUDA does not exist there.
2. No NVIDIA driver (``nvidia-smi`` missing or failing): the CPU build. On Windows that is
   PyPI's torch (CPU-only there); on Linux PyPI's torch is a CUDA build with ~3 GB of CUDA
   libraries, so the CPU build comes from PyTorch's ``cpu`` wheel index.
3. An NVIDIA driver: the newest CUDA build whose minimum driver the installed driver meets
   (:data:`CUDA_BUILDS`, the CUDA toolkits' minimum drivers for Linux and Windows). On Linux the
   CUDA 13.0 build is PyPI's own torch; every other CUDA build, and every CUDA build on Windows
   (PyPI's Windows torch is CPU-only), comes from PyTorch's ``cuXYZ`` wheel index.
4. A driver older than every CUDA build's minimum: the CPU build, saying that updating the
   driver would enable the GPU.

``SAM_CD_TORCH_INDEX_URL`` replaces the chosen index (a mirror of it, e.g. behind a company
proxy); ``None`` as an index means pip's configured index.
"""
from __future__ import annotations

import os
import re
import shutil
# Runs nvidia-smi with fixed arguments.
import subprocess  # nosec B404
from dataclasses import dataclass

__all__ = ["PYTORCH_INDEX", "CUDA_BUILDS", "PYPI_LINUX_CUDA", "TorchBuild", "parse_nvidia_smi", "build_for_variant", "torch_index",
           "choose_torch_build", "query_nvidia_smi", "ENV_TORCH_INDEX"]

PYTORCH_INDEX = "https://download.pytorch.org/whl"
ENV_TORCH_INDEX = "SAM_CD_TORCH_INDEX_URL"
#: (build, minimum Linux driver, minimum Windows driver), newest first.
CUDA_BUILDS: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...] = (
    ("cu130", (580, 65, 6), (580, 88)),
    ("cu126", (560, 28, 3), (560, 76)),
)
#: The CUDA build of the pinned torch on PyPI for Linux.
PYPI_LINUX_CUDA = "cu130"
NVIDIA_SMI_QUERY = ("--query-gpu=name,driver_version,memory.total", "--format=csv,noheader")


@dataclass(frozen=True)
class TorchBuild:
    """``variant``: ``cpu``, ``cuXYZ`` or ``default`` (macOS); ``index_url`` None = pip's configured index."""

    variant: str
    index_url: str | None
    reason: str
    gpu: str | None = None
    driver: str | None = None

    @property
    def cuda(self) -> bool:
        return self.variant.startswith("cu")


def parse_nvidia_smi(output: str | None) -> tuple[str, tuple[int, ...]] | None:
    """(GPU name, driver version) from ``nvidia-smi --query-gpu=name,driver_version,...`` output."""
    for line in (output or "").splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) >= 2 and re.fullmatch(r"\d+(\.\d+)+", fields[1]):
            return fields[0], tuple(int(x) for x in fields[1].split("."))
    return None


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(f"{v:02d}" if i == 2 else str(v) for i, v in enumerate(version))


def choose_torch_build(platform: str, nvidia_smi: str | None) -> TorchBuild:
    """The build for this OS (``sys.platform``) and ``nvidia-smi`` output (None: none or failed)."""
    windows = platform.startswith("win")
    if platform == "darwin":
        return TorchBuild("default", None, "macOS: PyPI's torch (CPU and Apple MPS)")
    cpu_index = None if windows else f"{PYTORCH_INDEX}/cpu"
    gpu = parse_nvidia_smi(nvidia_smi)
    if gpu is None:
        return TorchBuild("cpu", cpu_index, "no NVIDIA driver found (nvidia-smi): CPU build")
    name, driver = gpu
    for variant, linux_min, windows_min in CUDA_BUILDS:
        minimum = windows_min if windows else linux_min
        if driver >= minimum:
            on_pypi = not windows and variant == PYPI_LINUX_CUDA
            index = None if on_pypi else f"{PYTORCH_INDEX}/{variant}"
            return TorchBuild(variant, index, f"{name} with driver {_dotted(driver)} (≥ {_dotted(minimum)} "
                                              f"needed by the {variant} build)", name, _dotted(driver))
    oldest = CUDA_BUILDS[-1]
    minimum = oldest[2] if windows else oldest[1]
    return TorchBuild("cpu", cpu_index, f"{name} with driver {_dotted(driver)}, older than the "
                                        f"{_dotted(minimum)} the {oldest[0]} build needs: CPU build "
                                        f"(update the NVIDIA driver to use the GPU)", name, _dotted(driver))


def query_nvidia_smi(timeout: float = 20) -> str | None:
    """``nvidia-smi``'s CSV answer, or None when it is missing or fails."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        done = subprocess.run([exe, *NVIDIA_SMI_QUERY], capture_output=True, text=True,  # nosec B603
                              timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def torch_index(build: TorchBuild) -> str | None:
    """The index the torch packages come from: ``SAM_CD_TORCH_INDEX_URL`` if set, else the build's."""
    return os.environ.get(ENV_TORCH_INDEX) or build.index_url


def build_for_variant(platform: str, variant: str) -> TorchBuild:
    """The build ``variant`` (``cpu`` or one of :data:`CUDA_BUILDS`) forced by the user, for ``platform``."""
    windows = platform.startswith("win")
    if variant == "cpu":
        return TorchBuild("cpu", None if windows or platform == "darwin" else f"{PYTORCH_INDEX}/cpu",
                          "CPU build chosen by the user")
    if variant not in {v for v, _, _ in CUDA_BUILDS} or platform == "darwin":
        names = ", ".join(["cpu", *(v for v, _, _ in CUDA_BUILDS)])
        raise ValueError(f"unknown torch build {variant!r} for {platform} (choose one of {names})")
    on_pypi = not windows and variant == PYPI_LINUX_CUDA
    return TorchBuild(variant, None if on_pypi else f"{PYTORCH_INDEX}/{variant}", f"{variant} build chosen by the user")
