"""The `http_request` task type against a local HTTP server, and its SSRF guard."""
from __future__ import annotations

import ipaddress
import socket
import time
from typing import Any
from urllib.parse import quote

import pytest

from tasks_catalog import http_pools
from tasks_catalog.base import TaskContext, TaskFailed
from tasks_catalog.registry import task_types
from tasks_catalog.ssrf import checked_destination
from tests.http_server import LocalHttpServer


def run(body: dict[str, Any], timeout: float | None = 30) -> Any:
    """Run the type as the executor does: a concrete body with the defaults filled in."""
    task_type = task_types.get("http_request")
    assert task_type.check_body(body) == {}
    concrete = {spec.name: body.get(spec.name, spec.default) for spec in task_type.fields}
    return task_type.run(concrete, TaskContext(timeout=timeout))


def failure(body: dict[str, Any], timeout: float | None = 30) -> TaskFailed:
    with pytest.raises(TaskFailed) as caught:
        run(body, timeout)
    return caught.value


class TestRequests:
    def test_get_sends_query_and_headers(self, local_http):
        output = run({
            "url": local_http.url("/echo?a=1"),
            "query": {"b": "two", "n": 3, "flag": True, "many": ["x", "y"]},
            "headers": {"X-Token": "abc", "Accept": "application/json"},
        })
        assert output["status_code"] == 200
        echoed = output["body"]
        assert echoed["method"] == "GET"
        assert echoed["query"] == {"a": ["1"], "b": ["two"], "n": ["3"], "flag": ["true"], "many": ["x", "y"]}
        assert echoed["headers"]["x-token"] == "abc"
        assert echoed["headers"]["host"] == f"127.0.0.1:{local_http.port}"

    def test_post_sends_json(self, local_http):
        output = run({"method": "POST", "url": local_http.url("/echo"), "json": {"order": 42, "tags": ["a"]}})
        echoed = output["body"]
        assert echoed["method"] == "POST"
        assert echoed["headers"]["content-type"] == "application/json"
        assert echoed["body"] == '{"order": 42, "tags": ["a"]}'

    def test_json_response_is_parsed_and_headers_returned(self, local_http):
        output = run({"url": local_http.url("/status/201")})
        assert output["status_code"] == 201
        assert output["body"] == {"status": 201}
        assert output["headers"]["content-type"] == "application/json"

    def test_text_response_is_a_string(self, local_http):
        assert run({"url": local_http.url("/text")})["body"] == "plain words"

    def test_head_has_no_body(self, local_http):
        output = run({"method": "HEAD", "url": local_http.url("/text")})
        assert output["status_code"] == 200 and output["body"] == ""

    def test_ok_statuses_make_a_404_a_success(self, local_http):
        output = run({"url": local_http.url("/status/404"), "ok_statuses": [200, 404]})
        assert output["status_code"] == 404
        assert output["body"] == {"status": 404}

    def test_ok_statuses_make_a_200_a_failure(self, local_http):
        error = failure({"url": local_http.url("/status/200"), "ok_statuses": [204]})
        assert "answered 200" in str(error)

    def test_404_fails_permanently(self, local_http):
        error = failure({"url": local_http.url("/status/404")})
        assert not error.transient
        assert f"GET {local_http.url('/status/404')} answered 404" in str(error)

    def test_500_fails_transiently(self, local_http):
        error = failure({"url": local_http.url("/status/500")})
        assert error.transient
        assert "answered 500" in str(error)

    def test_429_fails_transiently(self, local_http):
        assert failure({"url": local_http.url("/status/429")}).transient

    def test_timeout_fails_transiently(self, local_http):
        started = time.monotonic()
        error = failure({"url": local_http.url("/slow/3"), "timeout": 0.5})
        assert error.transient
        assert "timed out" in str(error)
        assert time.monotonic() - started < 2.5

    def test_task_timeout_bounds_the_request_timeout(self, local_http):
        started = time.monotonic()
        error = failure({"url": local_http.url("/slow/3"), "timeout": 60}, timeout=0.5)
        assert "timed out" in str(error)
        assert time.monotonic() - started < 2.5

    def test_connection_refused_is_transient(self, local_http):
        port = local_http.port
        local_http.stop()
        error = failure({"url": f"http://127.0.0.1:{port}/echo"})
        assert error.transient
        assert "cannot connect" in str(error)


class TestResponseSizeCap:
    def test_body_at_the_limit_is_read(self, local_http, settings):
        settings.JUNCTION_HTTP_MAX_RESPONSE_BYTES = 1000
        assert len(run({"url": local_http.url("/big/1000")})["body"]) == 1000

    def test_declared_oversize_body_fails(self, local_http, settings):
        settings.JUNCTION_HTTP_MAX_RESPONSE_BYTES = 1000
        error = failure({"url": local_http.url("/big/5000")})
        assert not error.transient
        assert "exceeds the limit of 1000 bytes" in str(error)

    def test_streamed_oversize_body_fails_while_reading(self, local_http, settings):
        settings.JUNCTION_HTTP_MAX_RESPONSE_BYTES = 100_000
        error = failure({"url": local_http.url("/stream/5000000")})
        assert "exceeds the limit of 100000 bytes" in str(error)


def redirect_to(local_http, target: str, status: int = 302) -> str:
    return local_http.url(f"/redirect?status={status}&to={quote(target, safe='')}")


class TestRedirects:
    def test_redirect_to_an_allowed_address_is_followed(self, local_http):
        output = run({"url": redirect_to(local_http, "/echo?after=redirect")})
        assert output["status_code"] == 200
        assert output["body"]["path"] == "/echo"
        assert output["body"]["query"] == {"after": ["redirect"]}
        assert [r.path.split("?")[0] for r in local_http.requests] == ["/redirect", "/echo"]

    def test_303_turns_a_post_into_a_get(self, local_http):
        output = run({"method": "POST", "url": redirect_to(local_http, "/echo", 303), "json": {"a": 1}})
        assert output["body"]["method"] == "GET"
        assert output["body"]["body"] == ""

    def test_307_keeps_method_and_body(self, local_http):
        output = run({"method": "POST", "url": redirect_to(local_http, "/echo", 307), "json": {"a": 1}})
        assert output["body"]["method"] == "POST"
        assert output["body"]["body"] == '{"a": 1}'

    def test_a_redirect_status_in_ok_statuses_is_returned_not_followed(self, local_http):
        output = run({"url": redirect_to(local_http, "/echo"), "ok_statuses": [302]})
        assert output["status_code"] == 302
        assert output["headers"]["location"] == "/echo"
        assert len(local_http.requests) == 1

    def test_redirect_to_a_refused_address_is_refused(self, local_http):
        error = failure({"url": redirect_to(local_http, "http://169.254.169.254/latest/meta-data/")})
        assert not error.transient
        assert "refused to connect to 169.254.169.254: link-local address" in str(error)

    def test_redirect_to_a_loopback_address_outside_the_allow_list_is_refused(self, local_http, settings):
        settings.JUNCTION_SSRF_ALLOWED_NETWORKS = ["127.0.0.1/32"]
        error = failure({"url": redirect_to(local_http, f"http://127.0.0.2:{local_http.port}/echo")})
        assert "refused to connect to 127.0.0.2: loopback address" in str(error)
        assert [r.path.split("?")[0] for r in local_http.requests] == ["/redirect"]

    def test_redirect_to_another_scheme_is_refused(self, local_http):
        error = failure({"url": redirect_to(local_http, "file:///etc/passwd")})
        assert "refused URL scheme 'file'" in str(error)

    def test_redirect_loop_stops(self, local_http):
        error = failure({"url": local_http.url("/loop")})
        assert "too many redirects (more than 5)" in str(error)
        assert len(local_http.requests) == 6

    def test_authorization_is_dropped_on_a_redirect_to_another_origin(self, local_http, settings):
        # 127.0.0.1 and localhost are different origins that reach the same server.
        target = local_http.url("/echo", host="localhost")
        output = run({"url": redirect_to(local_http, target), "headers": {"Authorization": "Bearer t0ken", "X-Keep": "1"}})
        assert "authorization" not in output["body"]["headers"]
        assert output["body"]["headers"]["x-keep"] == "1"


class TestSsrfGuard:
    @pytest.fixture(autouse=True)
    def no_allowed_networks(self, settings):
        settings.JUNCTION_SSRF_ALLOWED_NETWORKS = []

    @pytest.mark.parametrize("host, reason", [
        ("127.0.0.1", "loopback"),
        ("10.0.0.1", "private"),
        ("169.254.169.254", "link-local"),
        ("100.64.0.1", "shared address space (CGNAT)"),
        ("[::1]", "loopback"),
        ("[::ffff:127.0.0.1]", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("localhost", "loopback"),
    ])
    def test_refused_before_connecting(self, local_http, host, reason):
        error = failure({"url": f"http://{host}:{local_http.port}/echo"})
        assert not error.transient
        assert "refused to connect to" in str(error)
        assert f"{reason} address" in str(error)
        assert local_http.requests == []

    @pytest.mark.parametrize("url", ["ftp://127.0.0.1/file", "file:///etc/passwd", "gopher://example.com/"])
    def test_other_schemes_are_refused(self, url):
        error = failure({"url": url})
        assert "only http and https are allowed" in str(error)

    def test_the_connection_goes_to_the_checked_address_with_the_original_host(self, local_http, settings):
        settings.JUNCTION_SSRF_ALLOWED_NETWORKS = ["127.0.0.0/8"]
        output = run({"url": local_http.url("/echo", host="localhost")})
        assert output["body"]["headers"]["host"] == f"localhost:{local_http.port}"


class TestHttps:
    @pytest.fixture
    def self_signed_https(self, tmp_path):
        """An HTTPS server on 127.0.0.1 whose certificate (for `localhost`) no CA signed."""
        import datetime
        import ssl

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256())
        )
        (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (tmp_path / "key.pem").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
        server = LocalHttpServer()
        server._server.socket = context.wrap_socket(server._server.socket, server_side=True)
        yield server.start()
        server.stop()

    def test_an_untrusted_certificate_is_a_permanent_tls_error(self, self_signed_https):
        error = failure({"url": f"https://localhost:{self_signed_https.port}/echo"})
        assert not error.transient
        assert "TLS error with localhost:" in str(error)
        assert "certificate verify failed" in str(error)
        assert self_signed_https.requests == []


def test_an_http_json_body_nested_too_deeply_is_kept_as_text(settings):
    from tasks_catalog.http_request import _decode

    deep = "[" * 5000 + "]" * 5000
    assert _decode(deep.encode(), "application/json") == deep
    assert _decode(b'{"a": [1]}', "application/json") == {"a": [1]}


class TestKeptAliveConnections:
    """`http_request` keeps connections alive per process (tasks_catalog/http_pools.py)."""

    def test_two_requests_to_one_server_use_one_connection(self, local_http):
        assert run({"url": local_http.url("/echo?n=1")})["body"]["query"] == {"n": ["1"]}
        assert run({"method": "POST", "url": local_http.url("/echo"), "json": {"n": 2}})["body"]["body"] == '{"n": 2}'
        assert local_http.connections == 1
        assert [r.connection for r in local_http.requests] == [1, 1]

    def test_head_and_redirects_leave_the_connection_reusable(self, local_http):
        run({"method": "HEAD", "url": local_http.url("/text")})
        run({"url": redirect_to(local_http, "/echo")})
        assert [r.path.split("?")[0] for r in local_http.requests] == ["/text", "/redirect", "/echo"]
        assert local_http.connections == 1

    def test_a_server_that_closes_a_kept_alive_connection_does_not_fail_the_next_task(self, local_http):
        assert run({"url": local_http.url("/close")})["body"] == {"closing": True}
        assert run({"url": local_http.url("/echo")})["status_code"] == 200
        assert local_http.connections == 2

    def test_a_get_dropped_unanswered_on_a_kept_alive_connection_is_sent_again_on_a_new_one(self, local_http):
        run({"url": local_http.url("/echo?n=first")})
        local_http.drop_next_reused_requests(1)
        output = run({"url": local_http.url("/echo?n=second")})
        assert output["body"]["query"] == {"n": ["second"]}
        assert [(r.path, r.connection) for r in local_http.requests] == [
            ("/echo?n=first", 1), ("/echo?n=second", 1), ("/echo?n=second", 2)]

    def test_a_post_dropped_unanswered_after_it_was_sent_is_not_sent_again(self, local_http):
        run({"url": local_http.url("/echo")})
        local_http.drop_next_reused_requests(1)
        error = failure({"method": "POST", "url": local_http.url("/echo"), "json": {"order": 1}})
        assert error.transient  # the task's own retries decide
        assert "connection to 127.0.0.1:" in str(error) and "failed" in str(error)
        assert [r.method for r in local_http.requests] == ["GET", "POST"]
        assert run({"url": local_http.url("/echo")})["status_code"] == 200
        assert local_http.connections == 2

    def test_a_request_not_written_to_a_kept_alive_connection_is_sent_again_whatever_its_method(self, local_http):
        # The kept-alive connection breaks in a way the idle check cannot see: this side can no
        # longer write, and the server does not notice for a while. The POST's first write
        # fails, so nothing reached the server: it is sent again, on a new connection.
        local_http.pause_after_next_response(0.5)
        run({"url": local_http.url("/echo")})
        pool = http_pools.pool_for(checked_destination(local_http.url("/echo")), ipaddress.ip_address("127.0.0.1"))
        assert pool.pool is not None
        idle = [conn for conn in pool.pool.queue if conn is not None and conn.sock is not None]
        assert len(idle) == 1
        idle[0].sock.shutdown(socket.SHUT_WR)
        output = run({"method": "POST", "url": local_http.url("/echo"), "json": {"order": 1}})
        assert output["body"]["body"] == '{"order": 1}'
        assert [(r.method, r.connection) for r in local_http.requests] == [("GET", 1), ("POST", 2)]

    def test_a_request_asking_connection_close_gets_a_new_connection_each_time(self, local_http):
        for _ in range(2):
            assert run({"url": local_http.url("/echo"), "headers": {"Connection": "close"}})["status_code"] == 200
        assert local_http.connections == 2

    def test_different_host_names_do_not_share_a_connection(self, local_http):
        # 127.0.0.1 and localhost reach the same address of the same server.
        run({"url": local_http.url("/echo")})
        assert run({"url": local_http.url("/echo", host="localhost")})["body"]["headers"]["host"] == f"localhost:{local_http.port}"
        run({"url": local_http.url("/echo")})
        assert [r.connection for r in local_http.requests] == [1, 2, 1]

    def test_a_body_over_the_limit_closes_the_connection(self, local_http, settings):
        settings.JUNCTION_HTTP_MAX_RESPONSE_BYTES = 100_000
        run({"url": local_http.url("/echo")})
        assert "exceeds the limit" in str(failure({"url": local_http.url("/chunked/500000")}))
        assert "exceeds the limit" in str(failure({"url": local_http.url("/big/500000")}))
        assert run({"url": local_http.url("/echo")})["status_code"] == 200
        assert [r.connection for r in local_http.requests] == [1, 1, 2, 3]

    def test_a_timeout_closes_the_connection(self, local_http):
        run({"url": local_http.url("/echo")})
        assert "timed out" in str(failure({"url": local_http.url("/slow/2"), "timeout": 0.3}))
        assert run({"url": local_http.url("/echo")})["status_code"] == 200
        assert [r.connection for r in local_http.requests] == [1, 1, 2]

    def test_threads_share_the_pool_safely(self, local_http):
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=8) as threads:
            outputs = list(threads.map(lambda i: run({"url": local_http.url(f"/echo?i={i}")}), range(64)))
        assert sorted(int(o["body"]["query"]["i"][0]) for o in outputs) == list(range(64))
        assert local_http.connections <= 8

    def test_a_forked_child_does_not_use_its_parents_connections(self, local_http):
        import json
        import os

        run({"url": local_http.url("/echo?who=parent")})
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: one task, its outcome through the pipe, and out
            try:
                outcome = run({"url": local_http.url("/echo?who=child")})["body"]["query"]
            except BaseException as exc:
                outcome = repr(exc)
            os.write(write_end, json.dumps(outcome).encode())
            os._exit(0)
        os.close(write_end)
        with os.fdopen(read_end) as pipe:
            child_outcome = json.loads(pipe.read())
        os.waitpid(pid, 0)
        assert child_outcome == {"who": ["child"]}
        run({"url": local_http.url("/echo?who=parent-again")})
        # The child opened its own connection; the parent's stayed intact and is used again.
        assert [(r.path, r.connection) for r in local_http.requests] == [
            ("/echo?who=parent", 1), ("/echo?who=child", 2), ("/echo?who=parent-again", 1)]


class TestKeptAliveConnectionsAndTheSsrfGuard:
    """A kept-alive connection never lets a request skip the check of its destination."""

    @pytest.fixture
    def two_servers(self):
        """Servers on 127.0.0.1 and 127.0.0.2, same port: only the address tells them apart."""
        first = LocalHttpServer().start()
        second = LocalHttpServer(host="127.0.0.2", port=first.port).start()
        yield first, second
        first.stop()
        second.stop()

    @pytest.fixture
    def dns(self, monkeypatch):
        """The resolver's answer for `svc.test` (the stand-in for a DNS server)."""
        answers: dict[str, str] = {}
        real = socket.getaddrinfo

        def getaddrinfo(host, port, *args, **kwargs):
            if host in answers:
                return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (answers[host], port))]
            return real(host, port, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
        return answers

    def test_a_new_dns_answer_gets_a_connection_to_the_new_address(self, two_servers, dns):
        first, second = two_servers
        dns["svc.test"] = "127.0.0.1"
        run({"url": f"http://svc.test:{first.port}/echo?to=first"})
        dns["svc.test"] = "127.0.0.2"
        run({"url": f"http://svc.test:{first.port}/echo?to=second"})
        assert [r.path for r in first.requests] == ["/echo?to=first"]
        assert [r.path for r in second.requests] == ["/echo?to=second"]

    def test_a_name_rebound_to_a_refused_address_is_refused_despite_a_kept_alive_connection(self, local_http, dns, settings):
        settings.JUNCTION_SSRF_ALLOWED_NETWORKS = ["127.0.0.1/32"]
        dns["svc.test"] = "127.0.0.1"
        run({"url": f"http://svc.test:{local_http.port}/echo"})
        dns["svc.test"] = "10.0.0.1"
        error = failure({"url": f"http://svc.test:{local_http.port}/echo"})
        assert "refused to connect to 10.0.0.1: private address" in str(error)
        assert len(local_http.requests) == 1

    def test_a_redirect_to_an_address_no_longer_allowed_is_refused_despite_a_kept_alive_connection(self, two_servers, settings):
        first, second = two_servers
        run({"url": second.url("/echo?while-allowed")})  # 127.0.0.0/8 allowed: a kept-alive connection to .2
        settings.JUNCTION_SSRF_ALLOWED_NETWORKS = ["127.0.0.1/32"]
        error = failure({"url": redirect_to(first, second.url("/echo?after-redirect"))})
        assert "refused to connect to 127.0.0.2: loopback address" in str(error)
        assert [r.path for r in second.requests] == ["/echo?while-allowed"]
