"""The mailbox behind an address: the free-plan claim's normalisation and keyed hash."""

from __future__ import annotations

import pytest
from django.test import override_settings

from plans.claim_keys import PROVIDER_RULES, email_claim_hash, email_normalise


@pytest.mark.parametrize(
    ("typed", "mailbox"),
    [
        # Case, everywhere; surrounding spaces.
        ("  Ann@Example.ORG ", "ann@example.org"),
        # Gmail: dots and +tags are ignored, googlemail.com is gmail.com.
        ("J.Doe+promo@gmail.com", "jdoe@gmail.com"),
        ("j.d.o.e@GoogleMail.com", "jdoe@gmail.com"),
        ("jdoe+a+b@gmail.com", "jdoe@gmail.com"),
        # Microsoft, Apple, Proton, Fastmail: +tags only; their aliases fold together.
        ("first.last+x@outlook.com", "first.last@outlook.com"),
        ("first.last+x@hotmail.com", "first.last@outlook.com"),
        ("me+shop@me.com", "me@icloud.com"),
        ("me+shop@mac.com", "me@icloud.com"),
        ("a.b+x@protonmail.com", "a.b@proton.me"),
        ("a.b@pm.me", "a.b@proton.me"),
        ("a+x@fastmail.fm", "a@fastmail.com"),
        # Everywhere else "+" and "." may be part of the real address.
        ("first.last+x@example.org", "first.last+x@example.org"),
        ("user@gmail.com.", "user@gmail.com"),
    ],
)
def test_variants_of_one_mailbox_normalise_to_it(typed: str, mailbox: str) -> None:
    assert email_normalise(typed) == mailbox


@pytest.mark.parametrize("bad", ["", "no-at-sign", "@example.org", "user@"])
def test_something_that_is_no_address_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not an e-mail address"):
        email_normalise(bad)


def test_every_provider_rule_folds_into_a_domain_of_the_table() -> None:
    for rule in PROVIDER_RULES.values():
        assert PROVIDER_RULES[rule.domain] is rule


@override_settings(PLANS_FREE_CLAIM_HASH_KEY="k1")
def test_the_hash_is_keyed_and_the_same_for_every_variant() -> None:
    digest = email_claim_hash("J.Doe+x@gmail.com")
    assert digest == email_claim_hash("jdoe@googlemail.com")
    assert len(digest) == 64
    assert "jdoe" not in digest
    assert digest != email_claim_hash("jdoe@gmail.com", key="k2")
    assert digest != email_claim_hash("jdoe2@gmail.com")
