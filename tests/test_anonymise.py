from datetime import date, datetime

import pytest

from sunrise_assets.domain.anonymise import (
    DEMO_KEY,
    KEY_ENV,
    MissingKeyError,
    Pseudonymizer,
    load_key,
    night_date,
    night_key,
    validate_night_key,
)


def test_subject_pseudonym_is_keyed_stable_and_shaped():
    a, b = Pseudonymizer(b"key-one"), Pseudonymizer(b"key-two")
    assert a.subject("brussels-uh", "P-004512") == a.subject("Brussels-UH ", " P-004512")
    assert a.subject("brussels-uh", "P-004512") != b.subject("brussels-uh", "P-004512")
    assert a.subject("brussels-uh", "P-004512") != a.subject("liege-chr", "P-004512")
    assert a.subject("x", "y").startswith("sub-") and len(a.subject("x", "y")) == 4 + 16  # 64 bits


def test_subject_pseudonym_is_64_bits_of_the_hmac_and_the_old_one_its_prefix():
    import hashlib
    import hmac

    mac = hmac.new(b"k1", b"subject\x00brussels-uh/P-004512", hashlib.sha256).hexdigest()
    p = Pseudonymizer(b"k1")
    assert p.subject(" Brussels-UH", "P-004512 ") == f"sub-{mac[:16]}"
    assert p.legacy_subject("brussels-uh", "P-004512") == f"sub-{mac[:8]}"
    token = hmac.new(b"k1", b"subject-identity\x00brussels-uh/P-004512", hashlib.sha256).hexdigest()
    assert p.identity_token("brussels-uh", "P-004512") == token and len(token) == 64


def test_date_shift_is_per_subject_and_in_range():
    p = Pseudonymizer(b"k")
    shifts = {p.date_shift_days(p.subject("s", f"P-{i}")) for i in range(200)}
    assert all(1 <= s <= 3650 for s in shifts) and len(shifts) > 150
    assert p.date_shift_days("sub-00000000") == p.date_shift_days("sub-00000000")


def test_night_date_counts_after_midnight_starts_for_the_evening_before():
    assert night_date(datetime(2024, 3, 5, 0, 30)) == date(2024, 3, 4)
    assert night_date(datetime(2024, 3, 4, 22, 15)) == date(2024, 3, 4)


def test_night_key_shape_and_validation():
    key = night_key("sub-3f9a1c2e07b45d61", date(2024, 1, 17))
    assert key == "sub-3f9a1c2e07b45d61_ses-20240117" == validate_night_key(key)
    assert night_key("sub-3f9a1c2e07b45d61", date(2024, 1, 17), run=2).endswith("_run-2")
    assert validate_night_key("sub-3f9a1c2e_ses-20240117")  # 8-hex keys of before stay valid
    for bad in (
        "P-004512",
        "sub-3f9a1c2e07b45d61_ses-20240117'; DROP TABLE x",
        "../etc",
        "sub-XYZ_ses-1",
        "sub-3f9a1c2e07b4_ses-20240117",  # 12 hex: neither length
        "sub-3F9A1C2E07B45D61_ses-20240117",
    ):
        with pytest.raises(ValueError):
            validate_night_key(bad)


def test_key_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(MissingKeyError):
        load_key()
    assert load_key(allow_demo=True) == DEMO_KEY.encode()
    monkeypatch.setenv(KEY_ENV, DEMO_KEY)
    with pytest.raises(MissingKeyError):
        load_key()
    monkeypatch.setenv(KEY_ENV, "s3cret")
    assert load_key() == b"s3cret"
