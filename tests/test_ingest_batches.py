from sunrise_assets.domain.raw_nights import contiguous_batches


def test_batches_follow_partition_order_and_size():
    order = ["a", "b", "c", "d", "e", "f", "g"]
    assert contiguous_batches(order, {"a", "b", "c", "e", "f", "g"}, 2) == [["a", "b"], ["c"], ["e", "f"], ["g"]]
    assert contiguous_batches(order, set(order), 50) == [order]
    assert contiguous_batches(order, set(), 5) == []
    assert contiguous_batches(order, {"g"}, 5) == [["g"]]
