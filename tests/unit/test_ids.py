from townhall.platform.ids import id_timestamp_ms, new_id


def test_ids_are_version_7_and_sort_in_creation_order():
    ids = [new_id() for _ in range(10_000)]
    assert all(value.version == 7 for value in ids)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_id_carries_its_creation_time(monkeypatch):
    import time

    before = time.time_ns() // 1_000_000
    value = new_id()
    assert before <= id_timestamp_ms(value) <= time.time_ns() // 1_000_000 + 1
