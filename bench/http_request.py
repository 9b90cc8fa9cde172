"""Time sequential `http_request` tasks against the benchmark's local HTTP server.

    .venv/bin/python -m bench.http_request [--requests 500] [--rounds 3] [--https]

Runs the task type in this process, as one worker pool process does (no broker, no database),
`--requests` times in a row per round against `bench.httpserver` (one process, 127.0.0.1), and
the same GETs through a bare urllib3 `PoolManager` as bench/rawtasks.py's `fetch` makes them
(the floor: one kept-alive connection, no SSRF check). Prints milliseconds per request, best
and median round, this process's CPU time per request (less sensitive to a busy machine),
and the TCP connections this process opened (counted by wrapping
`socket.socket.connect`, a measurement probe of the standard library only).

`--https`: the same over TLS, to `https://localhost:<port>/echo` served by the same handler
with a certificate from a throwaway CA made for the run; `certifi.where()` (the CA bundle
`http_request` verifies against) is pointed at that CA in this process only.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ["JUNCTION_SSRF_ALLOWED_NETWORKS"] = "127.0.0.0/8,::1/128"

import django  # noqa: E402
import urllib3  # noqa: E402

from bench import httpserver  # noqa: E402
from bench.stack import LOG_DIR, free_port  # noqa: E402

_connects = 0
_connect = socket.socket.connect


def _counting_connect(self: socket.socket, address: Any) -> None:
    global _connects
    _connects += 1
    _connect(self, address)


def timed(label: str, one: Callable[[int], None], requests: int, rounds: int) -> dict[str, Any]:
    global _connects
    per_request = []
    cpu_per_request = []
    connects = []
    for _ in range(rounds):
        _connects = 0
        started, cpu_started = time.perf_counter(), time.process_time()
        for i in range(requests):
            one(i)
        per_request.append((time.perf_counter() - started) * 1000 / requests)
        cpu_per_request.append((time.process_time() - cpu_started) * 1000 / requests)
        connects.append(_connects)
    row = {"label": label, "best_ms": min(per_request), "median_ms": statistics.median(per_request),
           "best_cpu_ms": min(cpu_per_request), "connects_per_round": connects}
    print(f"{label:<28} wall best {row['best_ms']:.3f} median {row['median_ms']:.3f} ms/request; "
          f"this process's CPU best {row['best_cpu_ms']:.3f} ms/request; TCP connects per round {connects}",
          flush=True)
    return row


_TLS_SERVER = """
import ssl, sys
from aiohttp import web
from bench.httpserver import echo
app = web.Application()
app.router.add_get("/echo", echo)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[2] + "/cert.pem", sys.argv[2] + "/key.pem")
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), ssl_context=context, print=None, access_log=None)
"""


def make_certificates(directory: str) -> str:
    """Write a throwaway CA (ca.pem) and a certificate for `localhost` it signed; return the CA path."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def certificate(subject: str, key: Any, issuer: str, issuer_key: Any, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
        )
        if ca:
            builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        else:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate("bench CA", ca_key, "bench CA", ca_key, True)
    leaf = certificate("localhost", key, "bench CA", ca_key, False)
    Path(directory, "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    Path(directory, "cert.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    Path(directory, "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return str(Path(directory, "ca.pem"))


def start_tls_server(port: int, directory: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _TLS_SERVER, str(port), directory], cwd=ROOT, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the HTTPS server did not start within 30 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--https", action="store_true", help="over TLS, with a throwaway CA")
    args = parser.parse_args()

    django.setup()
    from tasks_catalog.base import TaskContext
    from tasks_catalog.registry import task_types

    port = free_port()
    certificates = tempfile.TemporaryDirectory()
    if args.https:
        import certifi

        ca = make_certificates(certificates.name)
        certifi.where = lambda: ca  # what http_request verifies against, in this process only
        procs = [start_tls_server(port, certificates.name)]
        url = f"https://localhost:{port}/echo"
    else:
        ca = None
        procs = httpserver.start(port, 1, LOG_DIR)
        url = f"http://127.0.0.1:{port}/echo"
    socket.socket.connect = _counting_connect  # type: ignore[method-assign]
    try:
        task_type = task_types.get("http_request")
        defaults = {spec.name: spec.default for spec in task_type.fields}
        context = TaskContext(timeout=30)

        def junction(i: int) -> None:
            output = task_type.run({**defaults, "url": url, "query": {"n": i, "sleep_ms": 0}}, context)
            assert output["body"] == {"n": i + 1}, output

        http = urllib3.PoolManager(maxsize=64, ca_certs=ca)

        def raw(i: int) -> None:
            response = http.request("GET", url, fields={"n": str(i), "sleep_ms": "0"}, timeout=30)
            assert json.loads(response.data) == {"n": i + 1}

        junction(0)
        raw(0)  # warm both (imports, first connection)
        timed("http_request task type", junction, args.requests, args.rounds)
        timed("urllib3 PoolManager (raw)", raw, args.requests, args.rounds)
    finally:
        socket.socket.connect = _connect  # type: ignore[method-assign]
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        certificates.cleanup()


if __name__ == "__main__":
    main()
