"""Property-based tests over the whole API: Hypothesis builds request messages for every
method of every service the server registers (found through the server's own reflection,
so a service added later is covered without touching this file) from the message
descriptors: strings empty, huge, NUL-laden or non-ASCII; integers across their whole
range; NaN and infinite floats; random or real image bytes; repeated fields and maps of any
size up to a bound. Whatever the request, the server answers with a status other than
UNKNOWN or INTERNAL and keeps serving (health SERVING after every call)."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from conftest import ServerHandle
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from service.client import ImageToAdd, StrataClient

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis generates the requests")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

BAD = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
#: Services only the infrastructure owns: their behaviour is grpc's, not Strata's.
SKIP_SERVICES = {"grpc.reflection.v1alpha.ServerReflection", "grpc.reflection.v1.ServerReflection"}
#: Examples per method: enough to hit every field kind, small enough for CI (each call may
#: run the model).
EXAMPLES = 12
COLLECTION = "prop"

_state: dict[str, Any] = {}
_lock = threading.Lock()


def _live_methods(address: str) -> list[tuple[str, MethodDescriptor]]:
    with grpc.insecure_channel(address) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        pool = descriptor_pool.DescriptorPool(database)
        out: list[tuple[str, MethodDescriptor]] = []
        for name in database.get_services():
            if name in SKIP_SERVICES:
                continue
            service = pool.FindServiceByName(name)
            out.extend((name, method) for method in service.methods)
    return out


@pytest.fixture(scope="module")
def world(server: ServerHandle, small_jpegs: Callable[..., list[tuple[str, bytes]]]) -> Any:
    """A labelled collection the generated requests may name, its item ids and real images."""
    images = small_jpegs(8, seed=61, sides=(32, 64))
    with server.client(timeout=300) as client:
        _ensure_collection(client, images)
    _state["images"] = [d for _, d in images]
    _state["server"] = server
    return _state


def _ensure_collection(client: StrataClient, images: list[tuple[str, bytes]]) -> None:
    names = {c.name for c in client.list_collections()}
    if COLLECTION not in names:
        client.create_collection(COLLECTION)
    if client.get_collection(COLLECTION).items < 4:
        sent = [ImageToAdd(u, d, labels=["ab"[i % 2]]) for i, (u, d) in enumerate(images)]
        results = list(client.add_images(COLLECTION, sent))
        _state["ids"] = [r.id for r in results if r.id]


# -- strategies from descriptors ------------------------------------------------------------

INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


def _text(name: str) -> st.SearchStrategy[str]:
    odd = st.sampled_from(
        ["", " ", "\x00", "a\x00b", "é☃𝔘", "x" * 20_000, "'; DROP TABLE items; --"]
    )
    plain = st.text(max_size=40)
    if name in ("collection", "name") or name.endswith("collection"):
        return st.one_of(st.just(COLLECTION), odd, plain)
    if name in ("depth", "depths"):
        return st.one_of(st.sampled_from(["edges", "parts", "semantics", "blocks.4"]), odd, plain)
    if name in ("label", "labels", "labels_any"):
        return st.one_of(st.sampled_from(["a", "b"]), odd, plain)
    if name in ("method", "methods"):
        return st.one_of(
            st.sampled_from(["probe", "knn", "ensemble", "propagation", "self-training", "pca"]),
            odd,
        )
    if name == "csv":
        return st.one_of(
            st.just("id,label\n1,a\n"),
            st.just("\ufeffuri,label\nx,a\n"),
            odd,
            st.text(max_size=200),
        )
    return st.one_of(odd, plain)


def _bytes() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=64),
        st.builds(lambda i: _state["images"][i % len(_state["images"])], st.integers(0, 7)),
    )


def _int(field: FieldDescriptor) -> st.SearchStrategy[int]:
    low, high = INT_RANGES[field.type]
    edges = st.sampled_from(
        [v for v in (0, 1, -1, 2, 5, 10, 1000, 1001, low, high) if low <= v <= high]
    )
    ids = st.builds(
        lambda i: (_state.get("ids") or [1])[i % max(1, len(_state.get("ids") or [1]))],
        st.integers(0, 7),
    )
    return (
        st.one_of(edges, st.integers(low, high), ids)
        if field.name in ("id", "ids", "item_id")
        else st.one_of(edges, st.integers(low, high))
    )


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    if field.type == FieldDescriptor.TYPE_STRING:
        return _text(field.name)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return _bytes()
    if field.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if field.type in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return st.one_of(
            st.sampled_from([0.0, 1.0, -1.0, math.nan, math.inf, -math.inf, 1e-30, 1e30]),
            st.floats(width=32, allow_nan=True, allow_infinity=True),
        )
    if field.type == FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None
        return st.sampled_from([v.number for v in field.enum_type.values])
    return _int(field)


def _vector_values() -> st.SearchStrategy[list[float]]:
    # Real dimensions too (Lite0: edges 24, parts 80? semantics 1280), so vectors get past
    # the dimension check and meet the finite/zero checks.
    dims = st.sampled_from([0, 1, 3, 24, 40, 80, 112, 192, 320, 1280, 2000])
    value = st.sampled_from([0.0, 1.0, 1e-30, 1e30, math.nan, math.inf])
    return dims.flatmap(lambda n: value.map(lambda v: [v] * n))


def message_strategy(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    """Field values for one message: each field set or left out; oneofs get at most one."""
    parts: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            entry = field.message_type
            assert entry is not None
            if entry.GetOptions().map_entry:
                key, value = entry.fields_by_name["key"], entry.fields_by_name["value"]
                if value.type == FieldDescriptor.TYPE_MESSAGE:
                    continue
                strategy: st.SearchStrategy[Any] = st.one_of(
                    st.dictionaries(_scalar(key), _scalar(value), max_size=4),
                    st.builds(
                        lambda n: {f"k{i}": "v" for i in range(n)}, st.sampled_from([300, 1200])
                    ),
                )
            elif depth >= 3:
                continue
            else:
                inner = message_strategy(entry, depth + 1)
                strategy = st.lists(inner, max_size=3) if _repeated(field) else inner
        elif _repeated(field):
            if field.name == "values" and field.type == FieldDescriptor.TYPE_FLOAT:
                strategy = _vector_values()
            else:
                strategy = st.lists(_scalar(field), max_size=4)
        else:
            strategy = _scalar(field)
        parts[field.name] = st.one_of(st.none(), strategy)
    oneofs = {f.name: o.name for o in descriptor.oneofs for f in o.fields}

    def build(values: dict[str, Any]) -> dict[str, Any]:
        seen: set[str] = set()
        out = {}
        for name, value in values.items():
            if value is None:
                continue
            group = oneofs.get(name)
            if group is not None:
                if group in seen:
                    continue
                seen.add(group)
            out[name] = value
        return out

    return st.fixed_dictionaries(parts).map(build)


def _repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)


def _fill(message: Any, values: dict[str, Any]) -> Any:
    for name, value in values.items():
        field = message.DESCRIPTOR.fields_by_name[name]
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.message_type.GetOptions().map_entry:
                getattr(message, name).update(value)
            elif _repeated(field):
                for item in value:
                    _fill(getattr(message, name).add(), item)
            else:
                _fill(getattr(message, name), value)
        elif _repeated(field):
            getattr(message, name).extend(value)
        else:
            setattr(message, name, value)
    return message


# -- the property ---------------------------------------------------------------------------


def _methods() -> Iterator[Any]:
    """Method names for parametrising: the live list is read in the test (the server starts
    in a fixture), so collect from the generated descriptors of every service module."""
    from service.generated.strata.v1 import strata_pb2

    modules = [strata_pb2]
    for extra in ("labels_pb2", "insight_pb2", "browse_pb2"):
        try:
            modules.append(__import__(f"service.generated.strata.v1.{extra}", fromlist=["x"]))
        except ImportError:
            continue
    for module in modules:
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                yield f"{service.full_name}/{method.name}"
    for method in health_pb2.DESCRIPTOR.services_by_name["Health"].methods:
        if method.name != "Watch":  # a stream that never ends by design
            yield f"grpc.health.v1.Health/{method.name}"


def test_every_registered_service_is_covered(server: ServerHandle) -> None:
    """Each service the server registers (reflection) is in the parametrised list below."""
    live = {f"{name}/{m.name}" for name, m in _live_methods(server.address)}
    live.discard("grpc.health.v1.Health/Watch")  # a stream that never ends by design
    assert live <= set(_methods()), sorted(live - set(_methods()))


@pytest.mark.parametrize("full_method", sorted(set(_methods())))
def test_generated_requests_never_get_unknown_or_internal(world: Any, full_method: str) -> None:
    server: ServerHandle = world["server"]
    found = {f"{name}/{m.name}": m for name, m in _live_methods(server.address)}
    if full_method not in found:
        pytest.skip(f"{full_method} is not registered by this server")
    method = found[full_method]
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    channel = grpc.insecure_channel(
        server.address,
        options=[("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)],
    )
    path = f"/{full_method}"
    streaming_in, streaming_out = method.client_streaming, method.server_streaming

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.lists(message_strategy(method.input_type), min_size=1, max_size=3))
    def check(requests: list[dict[str, Any]]) -> None:
        messages = [_fill(request_class(), r) for r in requests]
        kwargs = {
            "request_serializer": lambda m: m.SerializeToString(),
            "response_deserializer": response_class.FromString,
        }
        try:
            if streaming_in and streaming_out:
                list(channel.stream_stream(path, **kwargs)(iter(messages), timeout=120))
            elif streaming_in:
                channel.stream_unary(path, **kwargs)(iter(messages), timeout=120)
            elif streaming_out:
                list(channel.unary_stream(path, **kwargs)(messages[0], timeout=120))
            else:
                channel.unary_unary(path, **kwargs)(messages[0], timeout=120)
        except grpc.RpcError as exc:
            code = exc.code()
            assert code not in BAD, f"{full_method} answered {code}: {exc.details()}\n{messages}"
            assert code != grpc.StatusCode.DEADLINE_EXCEEDED, f"{full_method} hung: {messages}"
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        with _lock, server.client(timeout=300) as client:  # later examples meet a real collection
            _ensure_collection(client, [(f"p/{i}.jpg", d) for i, d in enumerate(world["images"])])

    try:
        check()
    finally:
        channel.close()
