"""local_endpoint.py scales and throttles as OpenWhisk does: a pool of action processes per action
(--containers, --concurrency) and the namespace's limits (--concurrent-limit, --minute-limit).

Every action here is the real shim (openwhisk.py) serving the test app max-test-echo, whose /slow
route sleeps as long as asked and answers with its process id, so overlap and the process that
answered are visible. The controller's replies are checked against Apache OpenWhisk's source:
Messages (common/scala/.../http/ErrorResponse.scala:67-73), RateThrottler.scala, ActivationThrottler.scala
(ConcurrentRateLimit and TimedRateLimit, lines 59 and 65), EntitlementProvider.checkThrottles
(core/controller/.../entitlement/Entitlement.scala:212-215, 426) and WebActions.scala (verifyWebAction
at 496-498 and 567-577, its refusal at 540-541, the 202 at 692-698).
"""

import http.client
import os
import signal
import threading
import time
from typing import Any, Iterator, List, Tuple

import pytest

import local_endpoint
from support import ECHO_APP
from test_local_endpoint import LocalEndpoint, Response, TinyAction, child_pids, json_answer, process_exists, web

ACTION = "max-test-echo"
Timed = Tuple[Response, float]


def slow(endpoint: LocalEndpoint, seconds: float, tag: str = "") -> Response:
    return endpoint.request("POST", web(ACTION, "/slow?seconds=%g" % seconds), body=tag.encode())


def at_once(endpoint: LocalEndpoint, seconds: float, count: int, spacing: float = 0.2) -> List[Timed]:
    """`count` requests to /slow sent in this order, `spacing` apart: each one's answer, and when it
    came, in seconds after the first was sent."""
    answers = [None] * count  # type: List[Any]
    started = time.time()

    def send(index: int) -> None:
        response = slow(endpoint, seconds, str(index))
        answers[index] = response, time.time() - started

    threads = [threading.Thread(target=send, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
        time.sleep(spacing)
    for thread in threads:
        thread.join(60)
    return answers


def pid_of(response: Response) -> int:
    assert response.status == 200, response.body
    return response.json()["pid"]


def action_processes(endpoint: LocalEndpoint) -> List[int]:
    return child_pids(endpoint.process.pid)


def assert_throttled(response: Response, message: str) -> None:
    """Exactly the controller's refusal: 429, terminate()'s pretty JSON {"error", "code"} with the
    transaction id (ErrorResponse.scala:281-297), and no CORS, activation id or Retry-After header."""
    code = response.header("X-Request-ID")
    assert response.status == 429
    assert response.header("Content-Type") == "application/json"
    assert response.body.decode() == '{\n  "error": "%s",\n  "code": "%s"\n}' % (message, code)
    names = set(name.lower() for name, _ in response.headers)
    assert names == {"server", "date", "x-request-id", "content-type", "content-length"}


def loading_for(seconds: float, *arguments: str) -> LocalEndpoint:
    """An endpoint whose action processes each take `seconds` to load the model, so that a start
    shows in the time of its first answer (the variable reaches them through the endpoint)."""
    os.environ["TEST_MODEL_LOAD_SECONDS"] = str(seconds)
    try:
        return LocalEndpoint(*arguments)
    finally:
        del os.environ["TEST_MODEL_LOAD_SECONDS"]


def away_from_a_minute_boundary() -> None:
    """The minute limit counts per wall-clock minute: start a burst early in one."""
    if time.time() % 60 > 50:
        time.sleep(60.5 - time.time() % 60)


# ----------------------------------------------------------------------------- the pool


@pytest.fixture(scope="module")
def pooled() -> Iterator[LocalEndpoint]:
    with loading_for(1, ECHO_APP, "--containers", "2") as endpoint:
        yield endpoint


def test_containers_start_on_demand_and_serve_at_once(pooled: LocalEndpoint) -> None:
    assert len(action_processes(pooled)) == 1  # the first starts with the endpoint
    (first, first_at), (second, second_at) = at_once(pooled, 1.5, 2)
    assert pid_of(first) != pid_of(second)
    assert first_at < 2.5  # the running process answered at once
    assert second_at >= 2.7  # sent at 0.2 s: the new process's model load (1 s), then its 1.5 s run
    assert "%s: starting another action process (every running one is busy)" % ACTION in pooled.output()
    assert sorted(action_processes(pooled)) == sorted([pid_of(first), pid_of(second)])


def test_a_request_beyond_the_containers_waits_its_turn_and_is_answered(pooled: LocalEndpoint) -> None:
    answers = at_once(pooled, 1, 3)
    assert len(set(pid_of(response) for response, _ in answers)) == 2  # no third process
    assert max(at for _, at in answers) >= 2  # the third waited for a free process
    assert len(action_processes(pooled)) == 2


def test_by_default_one_process_runs_one_activation_at_a_time() -> None:
    with LocalEndpoint(ECHO_APP) as endpoint:
        answers = at_once(endpoint, 0.5, 2)
        assert len(set(pid_of(response) for response, _ in answers)) == 1
        assert max(at for _, at in answers) >= 1
        assert "__OW_ALLOW_CONCURRENT" not in answers[0][0].json()["request"]["ow_env"]
        assert len(action_processes(endpoint)) == 1


def test_concurrency_overlaps_activations_in_one_process() -> None:
    with LocalEndpoint(ECHO_APP, "--concurrency", "3") as endpoint:
        answers = at_once(endpoint, 1, 3)
        assert len(set(pid_of(response) for response, _ in answers)) == 1
        assert max(at for _, at in answers) < 2.5  # one after another would take 3 s
        assert answers[0][0].json()["request"]["ow_env"]["__OW_ALLOW_CONCURRENT"] == "true"


def test_an_action_given_by_address_is_one_container_with_its_concurrency() -> None:
    action = TinyAction()

    def run(message: Any) -> Any:
        time.sleep(0.5)
        return json_answer({"body": "done"})

    action.reply = run
    try:
        with LocalEndpoint("tiny=" + action.address, "--containers", "3", "--concurrency", "2") as endpoint:
            assert ("tiny: an action given by address is one container; --containers applies to model "
                    "directories") in endpoint.output()
            senders = [threading.Thread(target=endpoint.request, args=("GET", web("tiny"))) for _ in range(4)]
            for sender in senders:
                sender.start()
            for sender in senders:
                sender.join(30)
        assert (len(action.runs), action.most_active) == (4, 2)
    finally:
        action.close()


# ----------------------------------------------------------------------------- the controller's wait


def test_a_queue_longer_than_the_controllers_wait_is_202_and_the_activation_still_runs() -> None:
    with LocalEndpoint(ECHO_APP, "--timeout", "2") as endpoint:
        (running, _), (queued, queued_at) = at_once(endpoint, 1.5, 2)
        assert running.status == 200
        # Completed with Left(activationId): 202 "Response not yet ready." with its activation id,
        # when the controller's wait ends (sent at 0.2 s, answered at 2.2 s), while it runs (from 1.5 s to 3 s).
        assert queued.status == 202
        assert 2.1 <= queued_at < 2.9
        assert queued.json()["error"] == "Response not yet ready."
        activation_id = queued.header("x-openwhisk-activation-id")
        line = "%s %s: ended (success) after the controller answered 202" % (ACTION, activation_id)
        assert line in endpoint.wait_for_output(line, 5)


# ----------------------------------------------------------------------------- the namespace's limits


def test_the_concurrent_limit_counts_queued_and_running_activations() -> None:
    with LocalEndpoint(ECHO_APP, "--concurrent-limit", "2") as endpoint:
        holders = threading.Thread(target=at_once, args=(endpoint, 1.5, 2))  # one runs, one waits
        holders.start()
        time.sleep(0.5)
        assert_throttled(endpoint.request("POST", web(ACTION, "/slow")),
                         "Too many concurrent requests in flight (count: 2, allowed: 2).")
        # The check comes before OPTIONS and before the size check (verifyWebAction).
        assert_throttled(endpoint.request("OPTIONS", web(ACTION)),
                         "Too many concurrent requests in flight (count: 2, allowed: 2).")
        holders.join(60)
        assert endpoint.request("GET", web(ACTION, "/echo")).status == 200


def test_the_minute_limit_comes_first_and_counts_refused_requests() -> None:
    with LocalEndpoint(ECHO_APP, "--minute-limit", "2", "--concurrent-limit", "1") as endpoint:
        away_from_a_minute_boundary()
        holder = threading.Thread(target=slow, args=(endpoint, 1))
        holder.start()  # count 1
        time.sleep(0.3)
        assert_throttled(endpoint.request("GET", web(ACTION, "/echo")),  # count 2: within the minute's
                         "Too many concurrent requests in flight (count: 1, allowed: 1).")
        holder.join(60)
        # Refused requests were charged: the third of the minute is over, whatever is in flight.
        for count in (3, 4):
            assert_throttled(endpoint.request("GET", web(ACTION, "/echo")),
                             "Too many requests in the last minute (count: %d, allowed: 2)." % count)


def test_the_minute_is_a_wall_clock_bucket_not_a_sliding_window(monkeypatch: Any) -> None:
    now = [600.0 * 60 + 58]  # two seconds before a minute ends
    monkeypatch.setattr(local_endpoint.time, "time", lambda: now[0])
    throttle = local_endpoint.NamespaceThrottle(per_minute=2, concurrent=None)
    assert [throttle.check(), throttle.check()] == [None, None]
    assert throttle.check() == "Too many requests in the last minute (count: 3, allowed: 2)."
    now[0] += 3  # one second into the next minute: a new count, though the last three were 3 s ago
    assert [throttle.check(), throttle.check()] == [None, None]
    assert throttle.check() == "Too many requests in the last minute (count: 3, allowed: 2)."


def test_a_limit_of_zero_refuses_everything() -> None:
    throttle = local_endpoint.NamespaceThrottle(per_minute=None, concurrent=0)
    assert throttle.check() == "Too many concurrent requests in flight (count: 0, allowed: 0)."
    throttle = local_endpoint.NamespaceThrottle(per_minute=0, concurrent=None)
    assert throttle.check() == "Too many requests in the last minute (count: 1, allowed: 0)."


# ----------------------------------------------------------------------------- stopping


def keep_sending(endpoint: LocalEndpoint, seconds: float, count: int) -> threading.Thread:
    """`count` requests to /slow, 0.3 s apart, in a thread; the endpoint may stop under them."""
    def send(index: int) -> None:
        try:
            slow(endpoint, seconds, str(index))
        except (OSError, http.client.HTTPException):
            pass

    def send_all() -> None:
        threads = [threading.Thread(target=send, args=(index,)) for index in range(count)]
        for thread in threads:
            thread.start()
            time.sleep(0.3)
        for thread in threads:
            thread.join(60)

    sender = threading.Thread(target=send_all)
    sender.start()
    return sender


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_ends_every_action_process_even_one_starting(signum: int) -> None:
    with loading_for(1, ECHO_APP, "--containers", "3") as endpoint:
        sender = keep_sending(endpoint, 5, 3)
        # Two more processes start on demand; stop while the last one is still loading its model.
        deadline = time.time() + 10
        while len(action_processes(endpoint)) < 3 and time.time() < deadline:
            time.sleep(0.05)
        processes = action_processes(endpoint)
        assert len(processes) == 3
        assert "test model loaded" not in endpoint.output().split("starting another")[-1]
        endpoint.process.send_signal(signum)
        assert endpoint.process.wait(30) == 0
        # Checked before the harness's own clean-up, which would end any left behind.
        assert [pid for pid in processes if process_exists(pid)] == []
        sender.join(60)
