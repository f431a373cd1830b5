import pytest

from townhall.platform.messaging import Envelope, MalformedEnvelope
from townhall.platform.messaging.transport import BusOptions, token


def test_an_envelope_survives_the_wire():
    env = Envelope(
        type="orders.OrderPlaced", key="order-42", payload={"total": 3}, headers={"a": "b"}
    )
    assert Envelope.from_bytes(env.to_bytes()) == env
    assert env.id.version == 7


def test_a_caused_envelope_keeps_the_correlation_and_names_its_cause():
    first = Envelope(type="a", key="k", payload=None)
    second = first.caused("b", "k", {})
    third = second.caused("c", "k", {})
    assert third.headers["correlation_id"] == str(first.id)
    assert third.headers["causation_id"] == str(second.id)


@pytest.mark.parametrize(
    "body",
    [b"\xff", b"[]", b'{"type": "x"}', b'{"id": "nope", "type": "t", "key": "k", "payload": 1}'],
)
def test_bytes_that_are_not_an_envelope_are_refused_with_a_reason(body):
    with pytest.raises(MalformedEnvelope):
        Envelope.from_bytes(body)


def test_bus_options_come_from_the_url_query():
    options = BusOptions.from_url("redis://h:6379/0?prefix=p1&partitions=3&lease_ttl=2&maxlen=9")
    assert (options.prefix, options.partitions, options.lease_ttl) == ("p1", 3, 2.0)
    assert options.extra == {"maxlen": "9"}
    with pytest.raises(ValueError):
        BusOptions.from_url("memory://?prefix=a.b")


def test_names_become_distinct_broker_tokens():
    assert len({token(n) for n in ["a.b", "a_b", "a_db", "a__b", "a.db"]}) == 5
