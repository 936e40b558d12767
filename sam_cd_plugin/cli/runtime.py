"""``runtime status|install|diagnostics|use``: the engine's managed runtime from a shell (headless servers)."""
from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from ..runtime.torch_build import CUDA_BUILDS


def add_parser(sub) -> None:
    r = sub.add_parser("runtime", help="install, check or choose the Python environment the engine runs in")
    r.add_argument("--root", type=Path, default=None,
                   help="runtime folder (default: SAM_CD_RUNTIME_DIR, else inside the default QGIS profile)")
    actions = r.add_subparsers(dest="action", required=True)
    s = actions.add_parser("status", help="is the engine installed? (exit code 0 when ready)")
    s.add_argument("--json", action="store_true")
    i = actions.add_parser("install", help="make the managed runtime (torch, ultralytics) for this machine")
    i.add_argument("--torch", choices=["cpu", *(v for v, _, _ in CUDA_BUILDS)], default=None,
                   help="torch build (default: CUDA when nvidia-smi shows a new enough driver, else CPU)")
    i.add_argument("--python", type=Path, default=None,
                   help="base Python to make the venv from (default: the one beside QGIS's)")
    i.add_argument("--force", action="store_true", help="reinstall even when the engine is ready")
    actions.add_parser("diagnostics", help="print a Markdown report to paste into a bug report")
    u = actions.add_parser("use", help="register an existing Python that has torch and ultralytics")
    u.add_argument("python", type=Path, nargs="?", help="path of that environment's python executable")
    u.add_argument("--forget", action="store_true", help="remove the registration instead")
    r.set_defaults(func=run)


def _progress_printer():
    """(log, progress, close): a tqdm bar on a terminal, plain lines otherwise."""
    tqdm = None
    if sys.stderr.isatty():
        try:
            from tqdm import tqdm
        except ImportError:
            pass
    if tqdm is not None:
        bar = tqdm(total=100, unit="%", bar_format="{l_bar}{bar}| {elapsed}", desc="engine install")

        def progress(p: float) -> None:
            bar.update(max(0.0, round(100 * p, 1) - bar.n))

        return (lambda line: bar.write(line, file=sys.stdout)), progress, bar.close
    shown = [-10]

    def plain(p: float) -> None:
        if 100 * p >= shown[0] + 10:
            shown[0] = int(100 * p) // 10 * 10
            print(f"[{shown[0]:3d} %]", flush=True)

    return (lambda line: print(line, flush=True)), plain, (lambda: None)


def _install(args: argparse.Namespace) -> int:
    from ..runtime import InstallOptions, install_runtime

    cancelled = []
    previous = signal.signal(signal.SIGINT, lambda *_: cancelled.append(True))
    log, progress, close = _progress_printer()
    try:
        status = install_runtime(InstallOptions(python=args.python, torch_build=args.torch, force=args.force),
                                 log, progress, lambda: bool(cancelled))
    finally:
        close()
        signal.signal(signal.SIGINT, previous)
    print(status.summary)
    return 0 if status.ready else 1


def run(args: argparse.Namespace) -> int:
    from ..runtime import diagnostics_report, runtime_status, set_runtime_root
    from ..runtime.registration import forget_python, register_python

    if args.root is not None:
        set_runtime_root(args.root)
    if args.action == "install":
        return _install(args)
    if args.action == "diagnostics":
        print(diagnostics_report(), end="")
        return 0
    if args.action == "use":
        if args.forget == (args.python is not None):
            print("error: give the path of a python executable, or --forget", file=sys.stderr)
            return 2
        status = forget_python() if args.forget else register_python(args.python)
        print(status.summary)
        return 0
    status = runtime_status()
    if args.json:
        print(json.dumps({"ready": status.ready, "state": status.state, "summary": status.summary,
                          "python": str(status.python) if status.python else None,
                          "root": str(status.root), "packages": status.packages}, indent=2))
    else:
        print(status.summary)
    return 0 if status.ready else 1
