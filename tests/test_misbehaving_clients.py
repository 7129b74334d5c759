"""Clients that misbehave: streams that never send, refused calls with huge bodies, streams
cancelled mid-way. The server must keep serving everyone else, spend nothing on refused
calls, and keep exactly what it acknowledged."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator

import grpc
import pytest
from conftest import ServeProcess, ServerHandle
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.client import ImageToAdd, StrataClient, StrataClientError
from service.generated.strata.v1 import strata_pb2 as pb
from service.generated.strata.v1 import strata_pb2_grpc as pb_grpc


def _never_sends(stop: threading.Event) -> Iterator[pb.AddImageRequest]:
    stop.wait()
    return
    yield  # a generator that sends nothing until told to stop


def test_idle_streams_do_not_lock_out_health_or_reads(
    make_server: Callable[..., ServerHandle],
    small_jpegs: Callable[..., list[tuple[str, bytes]]],
) -> None:
    server = make_server(idle_stream_timeout_s=4.0)
    stop = threading.Event()
    idle_channel = grpc.insecure_channel(server.address)
    stub = pb_grpc.StrataStub(idle_channel)
    calls = [stub.AddImages(_never_sends(stop), timeout=120) for _ in range(64)]
    try:
        time.sleep(1.0)  # every idle stream is open and holding whatever it holds
        with grpc.insecure_channel(server.address) as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
            assert health.status == health_pb2.HealthCheckResponse.SERVING
        with server.client(timeout=60) as other:
            other.create_collection("after-idle")
            other.list_collections()
            ((uri, data),) = small_jpegs(1, seed=41)
            (result,) = other.add_images("after-idle", [ImageToAdd(uri, data)])
            assert result.status == "added"
            assert other.search("after-idle", [data], k=1)[0].results[0].hits[0].id == result.id
        # The idle streams end by themselves with a message, freeing their room.
        codes = set()
        for call in calls:
            with pytest.raises(grpc.RpcError) as caught:
                list(call)
            codes.add(caught.value.code())
            if caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                assert "no message" in (caught.value.details() or "")
        assert grpc.StatusCode.DEADLINE_EXCEEDED in codes, codes
        assert codes <= {grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}
    finally:
        stop.set()
        idle_channel.close()


def test_one_client_cannot_take_every_slot(
    make_server: Callable[..., ServerHandle],
) -> None:
    server = make_server(max_concurrent_requests=8, idle_stream_timeout_s=30.0)
    stop = threading.Event()
    greedy = grpc.insecure_channel(server.address)
    stub = pb_grpc.StrataStub(greedy)
    calls = [stub.AddImages(_never_sends(stop), timeout=60) for _ in range(8)]
    try:
        time.sleep(1.0)
        with server.client(timeout=30) as other:  # another connection still gets in
            other.create_collection("fair")
            assert other.search("fair", [[1.0] * 1280], depths=["semantics"], k=1)
    finally:
        stop.set()
        refused = []
        for call in calls:
            try:
                list(call)
            except grpc.RpcError as exc:
                refused.append(exc.code())
        greedy.close()
    # 8 // 4 = 2 per client: the other 6 were refused with RESOURCE_EXHAUSTED.
    assert refused.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 6, refused


@pytest.mark.slow
def test_refused_calls_are_rejected_before_their_body_is_read(
    serve_process: Callable[..., ServeProcess],
) -> None:
    server = serve_process(STRATA_WRITE_TOKENS="w-secret", STRATA_READ_TOKENS="r-secret")
    before = server.memory_kb()["VmRSS"]
    body = b"\xff" * (60 * 1024 * 1024)
    answers: queue.Queue[str] = queue.Queue()

    def send() -> None:
        with StrataClient(server.address, timeout=120) as client:
            try:
                client.embed([("huge.jpg", body)])
            except StrataClientError as exc:
                answers.put(exc.code)
            else:
                answers.put("OK")

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    codes = [answers.get_nowait() for _ in range(answers.qsize())]
    assert codes == ["UNAUTHENTICATED"] * 8, codes
    grown_mb = (server.memory_kb()["VmHWM"] - before) / 1024
    # 8 bodies of 60 MB read would be 480 MB or more; refused before reading, almost nothing.
    assert grown_mb < 150, f"server peak memory grew {grown_mb:.0f} MB"
    assert server.health() == "SERVING"


def test_cancelled_stream_keeps_exactly_what_was_acknowledged(
    client: StrataClient, collection: str, small_jpegs: Callable[..., list[tuple[str, bytes]]]
) -> None:
    images = small_jpegs(12, seed=42)
    acked: list[int] = []
    answered = threading.Event()

    def one_at_a_time() -> Iterator[pb.AddImageRequest]:
        for position, (uri, data) in enumerate(images):
            if position == 5:
                return  # the caller cancels below before this ends the stream
            answered.clear()
            yield pb.AddImageRequest(
                collection=collection if position == 0 else "", uri=uri, image=data
            )
            answered.wait(60)

    call = client.stub.AddImages(one_at_a_time(), timeout=120)
    for result in call:
        acked.append(result.id)
        answered.set()
        if len(acked) == 4:
            call.cancel()
            break
    time.sleep(0.5)
    assert client.get_collection(collection).items == 4
    for item_id in acked:
        assert client.get_item(collection, item_id).id == item_id


def test_many_threads_of_one_program_searching_at_once_are_not_refused(
    make_server: Callable[..., ServerHandle],
) -> None:
    # gRPC shares one connection among a process's channels: 24 threads are one peer, and a
    # normal load (the per-client share only caps request streams).
    server = make_server(max_concurrent_requests=64)
    with server.client(timeout=60) as client:
        client.create_collection("threads")
    failures: list[str] = []

    def search() -> None:
        with server.client(timeout=120) as client:
            for _ in range(3):
                try:
                    client.search("threads", [[1.0] * 1280], depths=["semantics"], k=1)
                except StrataClientError as exc:
                    failures.append(f"{exc.code}: {exc.details}")

    threads = [threading.Thread(target=search) for _ in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert not failures, failures[:3]
