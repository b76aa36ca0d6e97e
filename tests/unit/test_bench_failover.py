"""``sluice bench failover``'s pure parts: log parsing, settling, the victim, the split, the table."""
import datetime as dt
import json

import pytest

from bench import failover

KILL = dt.datetime(2026, 12, 6, 12, 0, 0).timestamp()


def line(after_s: float, level: str, name: str, msg: str) -> str:
    t = dt.datetime.fromtimestamp(KILL + after_s)
    return f"{t:%Y-%m-%d %H:%M:%S},{t.microsecond // 1000:03d} {level} {name}: {msg}"


LOG = "\n".join([
    line(-1.0, "INFO", "broker.cluster.cluster", "controller: placed or moved 1 partitions"),   # before the kill
    line(9.412, "INFO", "broker.cluster.cluster", "controller: placed or moved 18 partitions"),
    line(9.480, "INFO", "broker.log.takeover", "fenced the WAL of node 2 at object 69 (takeover at generation 10)"),
    line(9.52, "INFO", "broker.broker", "coordinator partition 9: taken over from node 2, 3 group entries replayed"),
    line(9.761, "INFO", "broker.log.replica_manager",
         "partition my-topic-1-1: taken over from node 2 at epoch 2, 10 batches replayed from its WAL"),
    line(9.8, "INFO", "broker.log.replica_manager",       # as brokers with share groups log it
         "partition t-0: taken over from node 2 at epoch 3, 4 batches and 1 share-state entries replayed from its WAL"),
    "Traceback (most recent call last):",
    line(9.9, "WARNING", "broker.x", "partition something else"),
    line(12.0, "INFO", "broker.cluster.controller", "controller: node 3 holds the lease at epoch 4"),
])


def test_log_lines_become_events_with_their_times():
    events = failover.parse_events(LOG, node=1)
    assert [e["kind"] for e in events] == ["decided", "decided", "fenced", "coordinator", "taken", "taken", "lease"]
    decided, fenced, coord, taken = events[1], events[2], events[3], events[4]
    assert (events[5]["topic"], events[5]["partition"], events[5]["batches"]) == ("t", 0, 4)
    assert decided["count"] == 18 and decided["node"] == 1
    assert decided["t"] - KILL == pytest.approx(9.412, abs=1e-6)
    assert (fenced["dead"], fenced["seq"]) == (2, 69)
    assert (coord["partition"], coord["dead"], coord["entries"]) == (9, 2, 3)
    # a topic name with dashes and digits: the partition is the last number
    assert (taken["topic"], taken["partition"], taken["dead"], taken["epoch"], taken["batches"]) == \
        ("my-topic-1", 1, 2, 2, 10)
    assert (events[6]["node"], events[6]["holder"], events[6]["epoch"]) == (1, 3, 4)   # node: whose log


def test_settings_and_their_errors():
    assert failover.parse_settings(["a=1", "b.c=x=y"], "--producer-set") == {"a": "1", "b.c": "x=y"}
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        failover.parse_settings(["nokey"], "--producer-set")


def doc(owners, targets=None, recover=None, offsets=None):
    t = {"name": "t", "owners": owners}
    if targets:
        t["targets"] = targets
    if recover:
        t["recover"] = recover
    return {"topics": [{"name": "other", "owners": [9]}, t], "offsets": offsets}


def test_settled_needs_live_owners_nothing_pending_and_a_spread():
    live = [1, 2, 3]
    assert failover.settled(doc([1, 1, 2, 2, 3, 3]), "t", live, True) == (True, "")
    assert failover.settled(None, "t", live, True)[0] is False
    assert failover.settled(doc([1]), "x", live, True) == (False, "topic not in the metadata")
    assert "without a live owner" in failover.settled(doc([1, 4]), "t", live, False)[1]
    assert "move pending" in failover.settled(doc([1, 2], targets=[-1, 3]), "t", live, False)[1]
    assert "takeover pending" in failover.settled(doc([1, 2], recover=[None, [3, 1, 7]]), "t", live, False)[1]
    assert "coordinator partition move" in failover.settled(
        doc([1, 2, 3], offsets={"owners": [1, 2], "targets": [3, -1]}), "t", live, True)[1]
    uneven = doc([1, 1, 1, 1, 2, 3])
    assert failover.settled(uneven, "t", live, True) == (False, "partitions per broker {1: 4, 2: 1, 3: 1}")
    assert failover.settled(uneven, "t", live, False) == (True, "")     # balancer off: any spread


def test_the_victim_by_policy_in_turn():
    owners = [1, 1, 2, 2, 3, 3]
    assert [failover.choose_victim(owners, 1, "non-controller", r)[0] for r in (1, 2, 3)] == [2, 3, 2]
    assert failover.choose_victim(owners, 2, "controller", 1) == (2, "")
    assert [failover.choose_victim(owners, 2, "any", r)[0] for r in (1, 2, 3, 4)] == [1, 2, 3, 1]
    assert failover.choose_victim([1, 1], 1, "non-controller", 1) == (1, "only the controller owns partitions: "
                                                                         "killed it")
    assert failover.choose_victim([2, 3], 1, "controller", 2)[0] == 3
    with pytest.raises(ValueError):
        failover.choose_victim([-1], None, "any", 1)


def test_the_first_bucket_poll_with_every_partition_elsewhere():
    tr = [{"seen_s": 1.0, "previous_last_seen_s": 0.9, "owners": [1, 2, 2]},
          {"seen_s": 3.1, "previous_last_seen_s": 3.05, "owners": [1, 1, 2]},
          {"error": "ClientError", "seen_s": 3.2, "previous_last_seen_s": 3.1},
          {"seen_s": 3.3, "previous_last_seen_s": 3.25, "owners": [1, 1, 3]}]
    assert failover.taken_seen(tr, 2, [1, 2])["seen_s"] == 3.3
    assert failover.taken_seen(tr, 2, [1]) == tr[1]
    assert failover.taken_seen(tr, 4, [0]) == tr[0]
    assert failover.taken_seen([], 2, [1]) is None


def split(events, bucket=None, acks=None, fetches=None):
    return failover.round_split(KILL, 2, "my-topic-1", [1, 4], events, bucket,
                                acks if acks is not None else {1: 10.4, 4: 10.9},
                                fetches if fetches is not None else {1: 10.6, 4: 11.2}, 9.0)


def test_split_of_a_round():
    events = failover.parse_events(LOG, 1) + failover.parse_events(
        line(10.012, "INFO", "broker.log.replica_manager",
             "partition my-topic-1-4: taken over from node 2 at epoch 5, 0 batches replayed from its WAL"), 3)
    s = split(events, bucket={"seen_s": 9.45, "previous_last_seen_s": 9.40})
    assert s["detection_s"] == 9.412 and s["detection_source"] == "controller log (node 1)"
    assert (s["bucket_seen_s"], s["bucket_seen_lower_s"]) == (9.45, 9.40)
    assert (s["fence_s"], s["fenced_by"], s["fence_object"]) == (9.48, 1, 69)
    assert (s["lease_taken_s"], s["lease_taken_by"]) == (12.0, 3)
    p1, p4 = s["partitions"]
    assert (p1["partition"], p1["new_owner"], p1["batches_replayed"], p1["taken_over_s"], p1["replay_s"]) == \
        (1, 1, 10, 9.761, 0.349)
    assert (p4["new_owner"], p4["epoch"], p4["replay_s"], p4["first_ack_s"], p4["first_fetch_s"]) == \
        (3, 5, 0.6, 10.9, 11.2)
    assert s["slowest"] == {"taken_over_s": 10.012, "replay_s": 0.6, "first_ack_s": 10.9, "first_fetch_s": 11.2}
    assert s["coordinator_partitions"] == [{"partition": 9, "new_owner": 1, "entries_replayed": 3,
                                            "taken_over_s": 9.52}]
    assert (s["served_s"], s["target_s"], s["target_met"]) == (11.2, 11.0, False)


def test_split_without_the_controller_line_or_the_poll():
    events = [e for e in failover.parse_events(LOG, 1) if e["kind"] != "decided"]
    s = split(events, bucket={"seen_s": 9.45, "previous_last_seen_s": 9.40}, acks={1: 10.0, 4: 10.5},
              fetches={1: 10.1, 4: 10.2})
    assert (s["detection_s"], s["detection_source"]) == (9.45, "bucket poll")
    assert s["partitions"][0]["replay_s"] == round(9.761 - 9.45, 3)
    assert s["partitions"][1]["taken_over_s"] is None and s["slowest"]["replay_s"] is None
    assert (s["served_s"], s["target_met"]) == (10.5, True)
    # a decision line logged after the poll saw the takeover belongs to something later
    late = failover.parse_events(line(9.6, "INFO", "c", "controller: placed or moved 2 partitions"), 2)
    assert split(events + late, bucket={"seen_s": 9.45, "previous_last_seen_s": 9.4})["detection_source"] == \
        "bucket poll"
    none = split([], acks={1: None, 4: 10.0})
    assert none["detection_s"] is None and none["served_s"] is None and none["target_met"] is None
    assert split(failover.parse_events(LOG, 1))["detection_s"] == 9.412     # no poll: the first line


def round_(n, victim, det, replay, ack, fetch, met=True):
    return {"round": n, "victim": victim, "victim_was_controller": n == 3, "complete": True,
            "split": {"detection_s": det, "fence_s": det + 0.1,
                      "slowest": {"replay_s": replay, "taken_over_s": det + replay, "first_ack_s": ack,
                                  "first_fetch_s": fetch},
                      "served_s": max(ack, fetch), "target_met": met,
                      "partitions": [{"partition": 0, "first_ack_s": ack, "first_fetch_s": fetch},
                                     {"partition": 3, "first_ack_s": ack - 0.1, "first_fetch_s": None}]}}


def test_medians_table_and_plot(tmp_path):
    rounds = [round_(1, 2, 9.5, 0.3, 10.5, 10.8), round_(2, 3, 10.1, 0.5, 11.5, 11.9, met=False),
              round_(3, 1, 9.9, 0.2, 10.9, 10.7)]
    s = failover.summarize(rounds, 9.0)
    rows = {r["key"]: r for r in s["rows"]}
    assert rows["detection_s"]["median_s"] == 9.9 and rows["detection_s"]["rounds_s"] == [9.5, 10.1, 9.9]
    assert rows["replay_s"]["median_s"] == 0.3 and rows["first_fetch_s"]["max_s"] == 11.9
    assert (rows["served_s"]["median_s"], s["target_s"], s["rounds_met"], s["median_met"]) == (10.9, 11.0, 2, True)
    result = {"config": {"rounds": 3, "brokers": 3, "partitions": 6, "rate_mb_per_s": 5.0, "record_size": 1024,
                         "session_timeout_ms": 9000, "heartbeat_ms": None},
              "rounds": rounds, "summary": s,
              "integrity": {"acked": 150000, "received": 150000, "offset_gaps": 0, "seq_dups": 0, "seq_gaps": 0,
                            "delivery_errors": None, "caught_up": True}}
    table = failover.markdown_table(result)
    assert "| detection: kill to the controller's takeover decision | **9.90** | 9.50, 10.10, 9.90 | " \
           "9.50 - 10.10 |" in table
    assert "| target: session timeout + 2 s | 11 | met by the median; met in 2 of 3 round(s) | |" in table
    assert "heartbeat the broker default" in table and "node 1 (2 partitions, the controller)" in table
    assert "150,000 acknowledged, 150,000 read back; offset gaps 0" in table
    png = tmp_path / "f.png"
    failover.plot(result, str(png))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    json.dumps(result)


def test_a_record_value_starts_with_its_send_time_and_sequence_number():
    v = failover._value(12.5, 7, b"x" * 10)
    assert len(v) == failover.VALUE_HEADER.size + 10 and failover.VALUE_HEADER.unpack_from(v) == (12.5, 7)
