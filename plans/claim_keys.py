"""The person behind an e-mail address, as the free-plan claim sees it.

A free plan is once per person, not once per account, so a claim is keyed by the
address with the variants a provider delivers to the same mailbox folded together:
case everywhere, and for providers with well-known rules, `+tags` (and Gmail's dots and
googlemail.com). The key is an HMAC under PLANS_FREE_CLAIM_HASH_KEY, so claim rows keep
no address in clear and outlive the account.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True)
class MailboxRule:
    """How one provider maps addresses to mailboxes."""

    domain: str  # the canonical domain its aliases fold into
    drop_tag: bool = True  # "name+anything" is delivered to "name"
    drop_dots: bool = False  # "n.a.m.e" is delivered to "name"


_GMAIL = MailboxRule("gmail.com", drop_dots=True)
_OUTLOOK = MailboxRule("outlook.com")
_ICLOUD = MailboxRule("icloud.com")
_PROTON = MailboxRule("proton.me")
_FASTMAIL = MailboxRule("fastmail.com")

# Domain -> rule, for providers that document their addressing. Anything else keeps its
# local part as typed (lower-cased): elsewhere "+" or "." may be a real difference.
PROVIDER_RULES: dict[str, MailboxRule] = {
    "gmail.com": _GMAIL,
    "googlemail.com": _GMAIL,
    "outlook.com": _OUTLOOK,
    "hotmail.com": _OUTLOOK,
    "live.com": _OUTLOOK,
    "msn.com": _OUTLOOK,
    "icloud.com": _ICLOUD,
    "me.com": _ICLOUD,
    "mac.com": _ICLOUD,
    "proton.me": _PROTON,
    "protonmail.com": _PROTON,
    "protonmail.ch": _PROTON,
    "pm.me": _PROTON,
    "fastmail.com": _FASTMAIL,
    "fastmail.fm": _FASTMAIL,
}


def email_normalise(email: str) -> str:
    """The canonical form of an address: the one mailbox its variants reach."""
    local, at, domain = email.strip().lower().rpartition("@")
    if not at or not local or not domain:
        raise ValueError(f"not an e-mail address: {email!r}")
    domain = domain.rstrip(".")
    rule = PROVIDER_RULES.get(domain)
    if rule is None:
        return f"{local}@{domain}"
    if rule.drop_tag:
        local = local.split("+", 1)[0]
    if rule.drop_dots:
        local = local.replace(".", "")
    return f"{local}@{rule.domain}"


def email_claim_hash(email: str, *, key: str | None = None) -> str:
    """Hex HMAC-SHA256 of the normalised address (the free-plan claim's key)."""
    key_bytes = (key or settings.PLANS_FREE_CLAIM_HASH_KEY).encode()
    return hmac.new(key_bytes, email_normalise(email).encode(), hashlib.sha256).hexdigest()
