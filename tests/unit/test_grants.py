"""Pure allow-list logic: validation of untrusted entries, the diff, expiry and the removal valve."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ikemgr.allowlist.sources.listfile import parse_list
from ikemgr.core.grants import (
    Grant,
    RawEntry,
    SyncPlan,
    Validated,
    active_pairs,
    as_utc,
    check_suspension_valve,
    check_valve,
    diff,
    newly_suspended,
    plain_row,
    validate,
)
from ikemgr.core.identity import IdentityGrammar
from ikemgr.errors import BackendUnavailable, Refused

NOW = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)
G = IdentityGrammar()


def entry(value: object, vlan: object = None, until: object = None, where: str = "line 1") -> RawEntry:
    return RawEntry("src", where, value, vlan, None, until)


# --------------------------------------------------------------------------- validation

HOSTILE = [
    ("alice@123456; DROP TABLE ikemgr_grants", "does not match"),
    ("' OR 1=1 --@123456", "does not match"),
    (".*@123456", "does not match"),
    (".x@123456", "leading dot"),
    ("a+@123456", "does not match"),
    ("[a-z]*@123456", "does not match"),
    ("x" * 200 + "@123456", "longer than"),
    (b"\xff\xfe@123456", "UTF-8"),
    ("al\x00ice@123456", "control"),
    ("alice@0123456", "leading zeros"),
    ("alice@123456@1", "exactly one"),
    ("$(reboot)@123456", "does not match"),
    ("\uff41lice@123456", "does not match"),  # fullwidth a
    ("alice@١٢٣", "does not match"),  # Arabic-Indic digits
    ("alice", "exactly one"),
    ("", "empty"),
    ("a..b@123456", "'..'"),
]


@pytest.mark.parametrize(("value", "reason"), HOSTILE)
def test_hostile_entries_are_rejected_with_source_and_line(value: object, reason: str) -> None:
    v = validate([entry(value, where="line 7")], G, NOW)
    assert v.grants == {}
    (r,) = v.rejected
    assert (r.source, r.where) == ("src", "line 7")
    assert reason in r.reason
    assert len(r.shown) <= 84  # escaped and truncated for logs


@pytest.mark.parametrize(("account", "vlan", "reason"), [
    ("alice@1", 123456, "contains '@'"),
    ("alice", True, "not a number"),
    ("alice", 1.5, "not a number"),
    (None, 123456, "not text"),
    ("alice", "12a", "does not match"),
    (b"\xc3\x28", 123456, "UTF-8"),
    ("alice", 0, "at least 1"),
])
def test_sql_columns_are_checked(account: object, vlan: object, reason: str) -> None:
    v = validate([entry(account, vlan, where="row 3")], G, NOW)
    assert v.grants == {} and reason in v.rejected[0].reason and v.rejected[0].where == "row 3"


def test_good_entries_from_text_bytes_and_columns() -> None:
    v = validate([entry("alice@123456"), entry(b"bob@123457"), entry("carol", 200001),
                  entry("dave", "123456", "2026-05-01T00:00:00+09:00")], G, NOW)
    assert v.rejected == ()
    assert set(v.grants) == {("alice", 123456, "src"), ("bob", 123457, "src"), ("carol", 200001, "src"),
                             ("dave", 123456, "src")}
    assert v.grant(("dave", 123456, "src")).valid_until == datetime(2026, 4, 30, 15, 0, tzinfo=UTC)


def test_bad_timestamp_rejects_the_row() -> None:
    v = validate([entry("alice", 123456, "tomorrow"), entry("bob", 123456, 12345)], G, NOW)
    assert v.grants == {} and len(v.rejected) == 2
    assert "ISO 8601" in v.rejected[0].reason and "not a timestamp" in v.rejected[1].reason


def test_naive_timestamps_are_utc() -> None:
    assert as_utc(datetime(2026, 1, 1), "x") == datetime(2026, 1, 1, tzinfo=UTC)
    assert as_utc("2026-01-01 09:00+09:00", "x") == datetime(2026, 1, 1, tzinfo=UTC)
    assert as_utc(None, "x") is None and as_utc("  ", "x") is None


def test_duplicates_merge_to_the_widest_validity() -> None:
    later = NOW + timedelta(days=30)
    v = validate([entry("alice", 123456, NOW + timedelta(days=1)), entry("alice", 123456, later),
                  entry("bob", 1, later), entry("bob", 1, None)], G, NOW)
    assert v.duplicates == 2
    assert v.grant(("alice", 123456, "src")).valid_until == later
    assert v.grant(("bob", 1, "src")).valid_until is None


def test_entry_already_expired_at_the_source_is_not_granted() -> None:
    v = validate([entry("alice", 123456, NOW - timedelta(seconds=1))], G, NOW)
    assert v.grants == {} and v.source_expired == {("alice", 123456, "src")} and v.rejected == ()


# --------------------------------------------------------------------------- expiry


def test_active_window_is_half_open() -> None:
    g = Grant("alice", 123456, "s", valid_from=NOW, valid_until=NOW + timedelta(hours=1))
    assert not g.active(NOW - timedelta(microseconds=1))
    assert g.active(NOW)
    assert g.active(NOW + timedelta(minutes=59))
    assert not g.active(NOW + timedelta(hours=1))
    assert not Grant("a", 1, "s", suspended=True).active(NOW)
    assert active_pairs([g, Grant("b", 2, "s")], NOW) == {("alice", 123456), ("b", 2)}
    assert active_pairs([g, Grant("b", 2, "s")], NOW + timedelta(hours=2)) == {("b", 2)}


# --------------------------------------------------------------------------- diff


def desired(*gs: Grant, expired: frozenset = frozenset()) -> Validated:
    return Validated({g.key: g for g in gs}, source_expired=expired)


def test_diff_classifies_every_change() -> None:
    keep = Grant("keep", 1, "s")
    gone = Grant("gone", 1, "s")
    ran_out = Grant("old", 2, "s", valid_until=NOW - timedelta(days=1))
    moved = Grant("moved", 2, "s", valid_until=NOW + timedelta(days=1), suspended=True)
    plan = diff([keep, gone, ran_out, moved],
                desired(keep, Grant("new", 3, "s"), Grant("moved", 2, "s", valid_until=NOW + timedelta(days=9))),
                NOW, ["s"])
    assert [g.account for g in plan.added] == ["new"]
    assert [g.account for g in plan.removed] == ["gone"]
    assert [g.account for g in plan.expired] == ["old"]
    ((before, after),) = plan.updated
    assert before == moved and after.valid_until == NOW + timedelta(days=9) and after.suspended  # kept
    assert plan.unchanged == 1 and plan.current == 3  # the expired one is not live
    assert plan.per_vlan() == {1: {"added": 0, "removed": 1, "expired": 0, "updated": 0},
                               2: {"added": 0, "removed": 0, "expired": 1, "updated": 1},
                               3: {"added": 1, "removed": 0, "expired": 0, "updated": 0}}
    assert plan.revoked_pairs() == {("gone", 1), ("old", 2)} and plan.granted_pairs() == {("new", 3)}


def test_source_listing_a_past_end_date_counts_as_expired_not_removed() -> None:
    cur = Grant("alice", 1, "s", valid_until=NOW + timedelta(days=1))
    plan = diff([cur], desired(expired=frozenset({cur.key})), NOW)
    assert plan.expired == (cur,) and plan.removed == () and plan.removal_share == 0


def test_identical_sources_give_an_empty_plan() -> None:
    gs = [Grant(f"u{i}", 100 + i % 3, "s") for i in range(50)]
    plan = diff(gs, desired(*gs), NOW)
    assert not plan.changed and plan.unchanged == 50


# --------------------------------------------------------------------------- valve


def plan_removing(removed: int, current: int) -> SyncPlan:
    return SyncPlan(removed=tuple(Grant(f"u{i}", 1, "s") for i in range(removed)), current=current)


def test_valve_refuses_above_the_share_and_says_nothing_changed() -> None:
    with pytest.raises(Refused) as e:
        check_valve(plan_removing(3, 10), 0.2, force=False)
    assert "remove 3 of 10 grants (30% > 20%)" in e.value.message and "nothing changed" in e.value.message
    assert e.value.exit_code == 4


def test_valve_allows_at_the_share_and_with_force() -> None:
    check_valve(plan_removing(2, 10), 0.2, force=False)
    check_valve(plan_removing(10, 10), 0.2, force=True)
    check_valve(plan_removing(0, 0), 0.0, force=False)


def test_empty_source_against_a_full_store_is_refused() -> None:
    current = [Grant(f"u{i}", 1, "s") for i in range(100)]
    plan = diff(current, desired(), NOW)
    assert plan.removal_share == 1.0
    with pytest.raises(Refused):
        check_valve(plan, 0.2, force=False)


@settings(max_examples=200, deadline=None)
@given(st.sets(st.tuples(st.sampled_from("abcdefgh"), st.integers(1, 5))),
       st.sets(st.tuples(st.sampled_from("abcdefgh"), st.integers(1, 5))))
def test_diff_applied_to_current_gives_desired(cur: set, want: set) -> None:
    current = [Grant(a, v, "s") for a, v in cur]
    plan = diff(current, desired(*(Grant(a, v, "s") for a, v in want)), NOW)
    result = (cur - {g.pair for g in plan.removed + plan.expired}) | {g.pair for g in plan.added}
    assert result == want
    assert len(plan.removed) == len(cur - want) and plan.removal_share == (
        len(cur - want) / len(cur) if cur else 0.0)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), st.binary(max_size=300)))
def test_validate_never_raises_and_accepts_only_the_grammar(value: str | bytes) -> None:
    v = validate([entry(value)], G, NOW)
    assert len(v.grants) + len(v.rejected) == 1
    for g in map(v.grant, v.grants):
        assert G.parse_vlan_identity(f"{g.account}@{g.vlan}") is not None
        assert all(c in "abcdefghijklmnopqrstuvwxyz0123456789._-" for c in g.account)


# --------------------------------------------------------------------------- list file rule


def test_list_file_lines_comments_and_numbers() -> None:
    entries = parse_list("f", b"# header\nalice@123456\n\n  bob@123457 \r\nbad entry\n")
    # bare tuples, the line number an int (validate names it "line N" when it refuses one)
    assert [(e[1], e[2]) for e in entries] == [(2, "alice@123456"), (4, "bob@123457"), (5, "bad entry")]
    assert validate(entries, G, NOW).rejected[0].where == "line 5"


def test_list_file_with_bad_bytes_keeps_every_line_and_its_number() -> None:
    entries = parse_list("f", b"alice@123456\n\xff@123456\n#END\n", "#END")
    assert [(e[1], e[2]) for e in entries] == [(1, b"alice@123456"), (2, b"\xff@123456")]
    v = validate(entries, G, NOW)
    assert list(v.grants) == [("alice", 123456, "f")] and v.rejected[0].where == "line 2"


@pytest.mark.parametrize("data", [b"", b"alice@123456\nbob@1234", b"alice@123456"])
def test_truncated_list_file_is_an_error_not_an_empty_list(data: bytes) -> None:
    with pytest.raises(BackendUnavailable) as e:
        parse_list("f", data)
    assert e.value.exit_code == 3 and "source f" in e.value.message


def test_end_marker_guards_truncation() -> None:
    assert len(parse_list("f", b"alice@123456\n#END\n", "#END")) == 1
    with pytest.raises(BackendUnavailable, match="marker"):
        parse_list("f", b"alice@123456\nbob@123457\n", "#END")
    assert parse_list("f", b"# nobody\n") == []


# --------------------------------------------------------------------------- directory check valve


def test_newly_suspended_ignores_accounts_already_suspended() -> None:
    status = {"a": "ok", "b": "missing", "c": "disabled", "d": "missing"}
    assert newly_suspended(status, {"b": "missing", "c": "ok", "d": "unknown"}) == ["c", "d"]


def test_suspension_valve() -> None:
    check_suspension_valve(2, 10, 0.2, force=False)
    check_suspension_valve(0, 0, 0.2, force=False)
    check_suspension_valve(10, 10, 0.2, force=True)
    with pytest.raises(Refused, match="would suspend 3 of 10 accounts"):
        check_suspension_valve(3, 10, 0.2, force=False)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=0x2FF), min_size=1, max_size=40))
def test_control_characters_are_rejected_exactly(value: str) -> None:
    has_control = any(ord(c) < 0x20 or ord(c) == 0x7F for c in value)
    v = validate([entry(value)], G, NOW)
    assert has_control == any("control" in r.reason for r in v.rejected)


def test_head_revision_constant_is_the_migration_scripts_head() -> None:
    """store.migrate skips importing Alembic when the database is at HEAD_REVISION."""
    from ikemgr.allowlist.store.migrate import HEAD_REVISION, head_revision

    assert head_revision() == HEAD_REVISION


def diff_one_by_one(current: list[Grant], d: Validated, now: datetime) -> SyncPlan:
    """The plan with every stored grant compared field by field: what diff's fast path must equal."""
    removed: list[Grant] = []
    expired: list[Grant] = []
    updated: list[tuple[Grant, Grant]] = []
    unchanged, live, seen = 0, 0, set()
    for cur in current:
        seen.add(cur.key)
        ran_out = cur.expired(now)
        live += not ran_out
        if cur.key not in d.grants:
            (expired if ran_out or cur.key in d.source_expired else removed).append(cur)
            continue
        new = d.grant(cur.key)
        if cur.same_terms(new):
            unchanged += 1
        else:
            updated.append((cur, new._replace(suspended=cur.suspended)))
    added = [d.grant(k) for k in d.grants if k not in seen]
    return SyncPlan(tuple(sorted(added)), tuple(sorted(removed)), tuple(sorted(expired)),
                    tuple(sorted(updated)), d.rejected, d.duplicates, live, unchanged, ())


_WHEN = st.sampled_from([None, NOW - timedelta(days=1), NOW, NOW + timedelta(days=1), NOW + timedelta(days=2)])
_GRANTS = st.builds(Grant, st.sampled_from("abcd"), st.integers(1, 3), st.sampled_from(["s", "t"]),
                    st.sampled_from([None, NOW - timedelta(days=2), NOW + timedelta(hours=1)]), _WHEN,
                    st.sampled_from(["", "n"]), st.booleans())


@settings(max_examples=400, deadline=None)
@given(st.lists(_GRANTS, max_size=30), st.lists(_GRANTS, max_size=30), st.lists(_GRANTS, max_size=4))
def test_diff_is_the_field_by_field_comparison(cur: list[Grant], listed: list[Grant], gone: list[Grant]) -> None:
    """Stored grants (unique keys, any terms and flags) against what validate hands over
    (unique keys, none run out, not suspended, some listed with a past end): the same plan."""
    stored = list({g.key: g for g in cur}.values())
    want = {g.key: g._replace(suspended=False) for g in listed if not g.expired(NOW)}
    d = Validated(want, duplicates=1, source_expired=frozenset(g.key for g in gone) - want.keys())
    assert diff(stored, d, NOW) == diff_one_by_one(stored, d, NOW)
    # the store hands plain grants over as bare tuples: the plan is the same, made of Grants
    bare = diff([tuple(g) for g in stored], d, NOW)  # type: ignore[misc]
    assert bare == diff(stored, d, NOW)
    assert all(type(g) is Grant for g in bare.removed + bare.expired + tuple(b for b, _ in bare.updated))


def _split(rows: list[Grant]) -> tuple[list[Grant], dict[str, set[str]]]:
    """Rows as the store hands them to a sync: the plain ones as texts per source."""
    plain: dict[str, set[str]] = {}
    general = []
    for g in rows:
        if g.valid_from is None and g.valid_until is None and not g.note and not g.suspended:
            plain.setdefault(g.source, set()).add(f"{g.account}@{g.vlan}")
        else:
            general.append(g)
    return general, plain


@settings(max_examples=400, deadline=None)
@given(st.lists(_GRANTS, max_size=30), st.lists(_GRANTS, max_size=30), st.lists(_GRANTS, max_size=4))
def test_the_plain_lanes_give_the_plan_of_the_rows(cur: list[Grant], listed: list[Grant], gone: list[Grant]) -> None:
    """Plain grants as texts on both sides (stored and listed): the same plan as one row each."""
    stored = list({g.key: g for g in cur}.values())
    want = {g.key: g._replace(suspended=False) for g in listed if not g.expired(NOW)}
    expired = frozenset(g.key for g in gone) - want.keys()
    rows = Validated(want, duplicates=1, source_expired=expired)
    general, plain = _split(list(want.values()))
    lanes = Validated({g.key: g for g in general}, duplicates=1, source_expired=expired, plain=plain)
    assert lanes.grants == rows.grants
    stored_general, stored_plain = _split(stored)
    assert diff(stored_general, lanes, NOW, stored_plain=stored_plain) == diff(stored, rows, NOW)
    assert diff(stored, lanes, NOW) == diff(stored, rows, NOW)


_ENTRY_VALUES = st.sampled_from(["alice@123456", "bob@1", "carol@123457", ".x@1", "a@01", "alice",
                                 b"bob@1", b"\xff@1", "d@2", "d@2 ", ("alice", 123456), ("bob", 1),
                                 ("d", "2"), ("bob@1", 1), ("bob", True), ("bob", -1), (b"carol", 123457)])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["s", "t"]), _ENTRY_VALUES,
                          st.sampled_from([None, NOW + timedelta(days=1), NOW - timedelta(days=1)]),
                          st.sampled_from([None, "n"])), max_size=12),
       st.sets(st.sampled_from(["alice@123456", "bob@1", "carol@123457", "d@2"])))
def test_known_entries_give_what_the_full_check_gives(spec: list[tuple[str, object, object, object]],
                                                       known: set[str]) -> None:
    """Skipping the grammar for texts it accepted before changes nothing in the outcome."""
    columns = [value if isinstance(value, tuple) else (value, None) for _, value, _, _ in spec]
    entries = [RawEntry(src, f"line {n}", account, vlan, None, until, note)
               for n, ((src, _, until, note), (account, vlan)) in enumerate(zip(spec, columns, strict=True), start=1)]
    full = validate(entries, G, NOW)
    quick = validate(entries, G, NOW, {"s": known, "t": known})
    assert (quick.grants, quick.rejected, quick.duplicates, quick.source_expired) == \
        (full.grants, full.rejected, full.duplicates, full.source_expired)
    assert all(type(t) is str for texts in full.plain.values() for t in texts)


def test_a_pair_listed_plain_and_with_terms_is_one_open_grant_with_the_note() -> None:
    """In either order: the widest validity (the plain entry is open on both ends) and the note."""
    until = NOW + timedelta(days=3)
    plain = RawEntry("src", "line 1", "alice@123456")
    windowed = RawEntry("src", "line 2", "alice", 123456, NOW - timedelta(days=1), until, "lab course")
    for order in ([plain, windowed], [windowed, plain]):
        v = validate(order, G, NOW)
        assert v.duplicates == 1 and list(v.grants) == [("alice", 123456, "src")]
        assert v.grant(("alice", 123456, "src")) == Grant("alice", 123456, "src", note="lab course")
    empty_columns = validate([RawEntry("src", "row 1", "bob", "7", "", " ", None),
                              RawEntry("src", "row 2", "bob@7")], G, NOW)
    assert empty_columns.plain == {"src": {"bob@7"}} and empty_columns.duplicates == 1


def test_plain_row_is_the_grant_of_a_canonical_text() -> None:
    assert plain_row("a.b-c@123456", "list") == tuple(Grant("a.b-c", 123456, "list"))
