"""Each classified install failure, produced for real: servers and mounts on this machine only
(loopback addresses, tmpfs), never another address."""
from __future__ import annotations

import http.server
import socket
import socketserver
import ssl
import subprocess
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest

from samcd_runtime_helpers import build_wheel, mounted, requirements_file
from sam_cd_plugin.runtime import InstallOptions, RuntimeInstallError, install_runtime, runtime_status
from sam_cd_plugin.runtime.location import LOG_NAME

# One retry: pip reports a refused connection only in its retry warning.
QUICK_PIP = ("--retries", "1", "--timeout", "5")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fail_install(options: InstallOptions) -> RuntimeInstallError:
    with pytest.raises(RuntimeInstallError) as err:
        install_runtime(options, lambda line: None, lambda p: None, lambda: False)
    return err.value


def from_index(tmp_path: Path, index: str, *pip_args: str) -> InstallOptions:
    req = requirements_file(tmp_path / "req.txt", f"--index-url {index}", "samcd-probe==1.0")
    return InstallOptions(requirements=req, verify_imports=("samcd_probe",), pip_args=QUICK_PIP + pip_args)


@contextmanager
def serving(handler, tls_context: ssl.SSLContext | None = None):
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    if tls_context is not None:
        server.socket = tls_context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


class ProxyAsksForCredentials(http.server.BaseHTTPRequestHandler):
    def _refuse(self):
        self.send_response(407, "Proxy Authentication Required")
        self.send_header("Proxy-Authenticate", 'Basic realm="company"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_CONNECT = do_GET = _refuse

    def log_message(self, *args):
        pass


def test_no_network(runtime_root, tmp_path):
    err = fail_install(from_index(tmp_path, f"http://127.0.0.1:{free_port()}/simple"))
    assert err.kind == "network", err
    assert "internet connection" in err.advice and "HTTPS_PROXY" in err.advice
    assert str(err).endswith(err.advice)
    assert runtime_status(tmp_path / "req.txt").state == "missing"  # nothing half-made is kept
    assert "Connection refused" in (runtime_root / LOG_NAME).read_text()


def test_proxy_asking_for_credentials(runtime_root, tmp_path):
    with serving(ProxyAsksForCredentials) as proxy:
        err = fail_install(from_index(tmp_path, f"https://127.0.0.1:{free_port()}/simple",
                                      "--proxy", f"http://127.0.0.1:{proxy}"))
    assert err.kind == "proxy", err
    assert "407" in err.advice and "HTTPS_PROXY=http://user:password@" in err.advice


def test_ssl_interception(runtime_root, tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    made = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                           "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"], capture_output=True)
    if made.returncode != 0:
        pytest.skip("openssl cannot make a test certificate here")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with serving(http.server.SimpleHTTPRequestHandler, context) as port:
        err = fail_install(from_index(tmp_path, f"https://127.0.0.1:{port}/simple"))
    assert err.kind == "ssl", err
    assert "PIP_CERT" in err.advice


def test_read_only_runtime_folder(runtime_root, tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    with mounted(runtime_root, "--bind", "-o", "ro", str(source)):
        subprocess.run(["mount", "-o", "remount,bind,ro", str(runtime_root)], check=False)
        err = fail_install(from_index(tmp_path, f"http://127.0.0.1:{free_port()}/simple"))
    assert err.kind == "no_write", err
    assert str(runtime_root) in err.advice and "SAM_CD_RUNTIME_DIR" in err.advice


def test_full_disk(runtime_root, tmp_path):
    build_wheel(tmp_path / "wheels", "3.0", payload_bytes=2 << 20)  # larger than the disk
    req = requirements_file(tmp_path / "req.txt", "--no-index", f"--find-links {tmp_path / 'wheels'}",
                            "samcd-probe==3.0")
    with mounted(runtime_root, "-t", "tmpfs", "-o", "size=512k", "tmpfs"):
        err = fail_install(InstallOptions(requirements=req, verify_imports=("samcd_probe",)))
        leftovers = [p for p in runtime_root.iterdir() if p.is_dir()]
    assert err.kind == "disk_full", err
    assert "free about 1 GB" in err.advice and "SAM_CD_RUNTIME_DIR" in err.advice
    assert leftovers == []


def test_python_of_another_minor_version(runtime_root, tmp_path):
    import sys

    others = [p for p in Path.home().glob(".pyenv/versions/3.*/bin/python3")
              if not p.parent.parent.name.startswith(f"{sys.version_info[0]}.{sys.version_info[1]}.")]
    if not others:
        pytest.skip("no Python of another minor version on this machine")
    err = fail_install(InstallOptions(python=others[0]))
    assert err.kind == "unsupported_python", err
    assert "QGIS runs Python" in str(err)


def test_not_a_python(runtime_root, tmp_path):
    err = fail_install(InstallOptions(python=Path("/bin/true")))
    assert err.kind == "unsupported_python", err
    assert "does not run as a Python interpreter" in str(err)
