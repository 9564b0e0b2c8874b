"""The login limiter and token revocation, through the real server (uvicorn on 127.0.0.1; a
second loopback address, 127.0.0.2, plays the attacker's machine)."""

from __future__ import annotations

import subprocess
import sys
import threading
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.auth import LoginLimiter, LoginTicket, UserStore
from libs.config import load_config
from tests.conftest import REPO
from tests.live_api import LiveApi, live_api

PASSWORD = "correct horse battery"
ATTACKER = "127.0.0.2"


@pytest.fixture
def server(x86_config: Path) -> Iterator[LiveApi]:
    users = UserStore(load_config(x86_config, check_files=False).data_path("auth") /
                      "users.json")
    users.add("admin1", PASSWORD, "admin")
    users.add("viewer1", PASSWORD, "viewer")
    with live_api(x86_config) as api:
        yield api


def test_concurrent_wrong_passwords_get_five_checks_and_the_admin_still_signs_in(
        server: LiveApi) -> None:
    barrier = threading.Barrier(40)
    codes: list[int] = []
    retry: list[int] = []
    lock = threading.Lock()

    def guess(i: int) -> None:
        barrier.wait(10)
        status, headers, _ = server.login("admin1", f"wrong-guess-{i}", source=ATTACKER)
        with lock:
            codes.append(status)
            if status == 429:
                retry.append(int(headers["retry-after"]))

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    seen = Counter(codes)
    print(f"40 concurrent wrong passwords: {seen[401]} checked (401), {seen[429]} refused "
          f"(429, Retry-After {min(retry, default=0)}-{max(retry, default=0)} s)")
    # 401 = the password was checked and wrong; 429 = refused before any check.
    assert seen[401] <= 5 and seen[401] + seen[429] == 40, seen
    assert seen[429] >= 35 and min(retry) >= 1, seen
    # The attacker's address stays refused, even with the right password...
    assert server.login("admin1", PASSWORD, source=ATTACKER)[0] == 429
    # ...while the admin signs in from their own address and is served.
    status, _, token = server.login("admin1", PASSWORD)
    assert status == 200 and token
    assert server.request("GET", "/auth/me", token=token)[0] == 200


def test_failures_for_one_user_do_not_lock_out_another_address(server: LiveApi) -> None:
    for i in range(5):
        assert server.login("admin1", f"wrong-{i}", source=ATTACKER)[0] == 401
    status, headers, _ = server.login("admin1", "wrong-again", source=ATTACKER)
    assert status == 429 and int(headers["retry-after"]) > 200
    assert server.login("viewer1", PASSWORD, source=ATTACKER)[0] == 429  # the address is
    assert server.login("admin1", PASSWORD)[0] == 200  # but not the user


def test_tokens_are_revoked_by_a_password_change_and_by_recreating_the_user(
        server: LiveApi) -> None:
    admin = server.token("admin1", PASSWORD)
    viewer = server.token("viewer1", PASSWORD)
    assert server.request("GET", "/auth/me", token=viewer)[0] == 200
    # The password changed with `lookout create-user --replace`.
    res = subprocess.run(
        [sys.executable, "-m", "processor.cli", "create-user", "viewer1", "--config",
         str(server.config), "--password-stdin", "--replace"], cwd=REPO,
        input="another long password\n", capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    status, _, body = server.request("GET", "/auth/me", token=viewer)
    assert status == 401 and b"revoked" in body
    assert server.login("viewer1", PASSWORD)[0] == 401
    fresh = server.token("viewer1", "another long password")
    assert server.request("GET", "/auth/me", token=fresh)[0] == 200
    # Deleted and made again with the same password through the API.
    new_user = b'{"username": "op1", "password": "op-password-1", "role": "viewer"}'
    json_type = {"Content-Type": "application/json"}
    assert server.request("POST", "/auth/users", new_user, json_type, token=admin)[0] == 201
    op = server.token("op1", "op-password-1")
    assert server.request("DELETE", "/auth/users/op1", token=admin)[0] == 204
    assert server.request("POST", "/auth/users", new_user, json_type, token=admin)[0] == 201
    assert server.request("GET", "/auth/me", token=op)[0] == 401
    assert server.request("GET", "/auth/me", token=admin)[0] == 200  # others unaffected


def test_limiter_memory_is_bounded_whatever_the_user_names() -> None:
    limiter = LoginLimiter(max_entries=1000)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(300):  # 300 attempts with 0.9 MB names, as in issue 8
            name = f"{i:04d}" + "x" * 900_000
            ticket = limiter.reserve(name, f"10.0.{i // 250}.{i % 250}")
            if isinstance(ticket, LoginTicket):
                limiter.done(ticket, ok=False)
            del name
        for i in range(5000):  # and many more distinct names than the table holds
            ticket = limiter.reserve(f"user{i}", f"10.1.{i // 250}.{i % 250}")
            if isinstance(ticket, LoginTicket):
                limiter.done(ticket, ok=False)
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(limiter) <= 1000
    assert kept < 2_000_000, kept


def test_limiter_reserves_before_the_check_and_clears_on_success() -> None:
    limiter = LoginLimiter()
    tickets = [limiter.reserve("admin", "10.0.0.1") for _ in range(8)]
    granted = [t for t in tickets if isinstance(t, LoginTicket)]
    assert len(granted) == 5 and all(t == 1.0 for t in tickets[5:])
    for t in granted[:4]:
        limiter.done(t, ok=False)
    limiter.done(granted[4], ok=True)
    # The address's own failures stay (4 of 5), the user's at that address are cleared.
    assert isinstance(limiter.reserve("admin", "10.0.0.1"), LoginTicket)
    assert not isinstance(limiter.reserve("admin", "10.0.0.1"), LoginTicket)
    assert isinstance(limiter.reserve("admin", "10.0.0.2"), LoginTicket)
