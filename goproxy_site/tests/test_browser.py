"""Browser tests: Playwright driving Debian's Chromium against the live portal and admin.

The new-user test signs up, opens the verification link from Django's locmem outbox,
claims the free plan, runs the real `manage.py runproxy` as a subprocess on the same
test databases, copies the `curl -x` line from the page (through the Copy button and the
clipboard) and runs it against the live server, then reloads the secret's page and
rotates. Others sign up again after deleting the account, and meet the login throttle.
Each test saves full-page screenshots into artifacts/screenshots/.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib import admin
from django.core import mail
from django.core.cache import cache
from django.db import connections
from django.db.models import F
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect, sync_playwright

from accounts.models import ProxyCredential, User
from accounts.selectors import credential_authenticate
from accounts.services import credential_issue, user_create
from goproxy_site.tests.support.net import free_port
from plans.models import (
    Feature,
    FreePlanClaim,
    Notification,
    Plan,
    Subscription,
    TrafficSequence,
    UsageBucket,
    WebhookDelivery,
    WebhookEndpoint,
)
from plans.services import plan_assign, plan_queue, subscription_reset_usage

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
PASSWORD = "sturdy-lantern-47"
PROXY_START_TIMEOUT = 20.0
CURL_TIMEOUT = 20

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason=f"{CHROMIUM} is missing (`make sysdeps` installs Debian's chromium)",
    ),
    pytest.mark.django_db(transaction=True, databases=["default", "plans"]),
]

# In-page checks run on every screen: each visible form control has a label, and text
# has WCAG AA contrast against the first opaque background behind it.
A11Y_JS = """
() => {
  const problems = [];
  const visible = (el) => {
    const r = el.getBoundingClientRect();
    const s = getComputedStyle(el);
    return r.width > 0 && r.height > 0 && s.visibility !== "hidden" && s.display !== "none";
  };
  for (const el of document.querySelectorAll("input, select, textarea")) {
    if (el.type === "hidden" || !visible(el)) continue;
    const named = (el.labels && el.labels.length) || el.getAttribute("aria-label")
      || el.getAttribute("aria-labelledby") || el.type === "checkbox" && el.closest("td");
    if (!named) problems.push("no label: " + (el.name || el.id || el.outerHTML.slice(0, 60)));
  }
  const rgb = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (let n = el; n; n = n.parentElement) {
      const c = rgb(getComputedStyle(n).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] === 1)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const seen = new Set();
  while (walker.nextNode()) {
    const el = walker.currentNode.parentElement;
    if (!walker.currentNode.textContent.trim() || seen.has(el) || !visible(el)) continue;
    if (el.closest("svg, .skip-link")) continue;
    seen.add(el);
    const fg = rgb(getComputedStyle(el).color).slice(0, 3);
    const [a, b] = [lum(fg), lum(background(el))];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    const text = el.textContent.trim().slice(0, 40);
    if (ratio < 4.5) problems.push(`contrast ${ratio.toFixed(2)}: "${text}"`);
  }
  const width = document.documentElement.scrollWidth;
  if (width > window.innerWidth + 1) problems.push(`horizontal scroll: ${width}`);
  return problems;
}
"""


def db_url(alias: str) -> str:
    """A URL for the subprocess that points at this test run's database."""
    s = connections[alias].settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    return (
        f"postgres://{s.get('USER') or 'postgres'}{password}@{s.get('HOST') or '127.0.0.1'}:"
        f"{s.get('PORT') or 5432}/{s['NAME']}"
    )


def shot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 5_000, f"{path} looks empty"
    return path


def assert_accessible(page: Any) -> None:
    problems = page.evaluate(A11Y_JS)
    assert problems == [], f"{page.url}: {problems}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # Playwright's sync API runs an event loop in this thread; Django's ORM calls from the
    # test body are still synchronous and single-threaded, so allow them here.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as p:
            chromium = p.chromium.launch(
                executable_path=CHROMIUM,
                headless=True,
                args=[
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--no-first-run",
                ],
            )
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser: Any, live_server: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1366, "height": 900}, base_url=live_server.url)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert errors == [], f"JavaScript errors: {errors}"


class Proxy:
    def __init__(self, port: int, log_path: Path) -> None:
        self.port = port
        self.log_path = log_path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[Proxy]:
    """`manage.py runproxy` on a free port, reading this test's databases."""
    port = free_port()
    log_path = tmp_path / "proxy.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "goproxy_site.settings.test",
        "ACCOUNTS_DATABASE_URL": db_url("default"),
        "PLANS_DATABASE_URL": db_url("plans"),
        "PYTHONUNBUFFERED": "1",
    }
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "runproxy", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + PROXY_START_TIMEOUT
        while b"listening on" not in log_path.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"runproxy did not start:\n{log_path.read_text()}")
            time.sleep(0.05)
        yield Proxy(port, log_path)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def run_curl(line: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k.lower() not in {"no_proxy", "all_proxy"}}
    return subprocess.run(
        shlex.split(line), capture_output=True, text=True, timeout=CURL_TIMEOUT, env=env
    )


def free_plan() -> Any:
    # Transactional tests flush the tables, so the migration's seed row may be gone.
    plan, _ = Plan.objects.get_or_create(
        name="Free",
        defaults={"traffic_limit_bytes": 200_000_000, "duration_days": 1, "is_free": True},
    )
    return plan


def add_usage(sub: Any, *, days: int, per_day: int = 60_000_000) -> None:
    """Hourly buckets for the last `days` days plus the totals, as the pipeline writes them."""

    hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    for day in range(days):
        up = per_day // 4 if day % 2 else per_day // 8
        down = per_day - up
        UsageBucket.objects.create(
            user_id=sub.user_id,
            subscription=sub,
            hour=hour - timedelta(days=day),
            bytes_up=up,
            bytes_down=down,
        )
        Subscription.objects.filter(pk=sub.pk).update(
            bytes_up=F("bytes_up") + up, bytes_down=F("bytes_down") + down
        )


def verification_link() -> str:
    """The path of the link in the newest verification mail (Django's locmem outbox)."""
    body = str(mail.outbox[-1].body)
    match = re.search(r"https?://[^/\s]+(/accounts/confirm-email/\S+)", body)
    assert match, body
    return match.group(1)


def sign_up(page: Any, email: str) -> None:
    page.goto("/accounts/signup/")
    page.get_by_label("E-mail address").fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password again").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()


def verify_from_outbox(page: Any) -> None:
    page.goto(verification_link())
    page.get_by_role("button", name=re.compile(r"^Verify ")).click()


def test_new_user_signs_up_verifies_claims_free_plan_and_uses_the_curl_line(
    page: Any, live_server: Any, proxy: Proxy, settings: Any
) -> None:
    free_plan()
    settings.PROXY_PUBLIC_HOST = "127.0.0.1"
    settings.PROXY_PORT = proxy.port
    settings.PORTAL_CURL_EXAMPLE_URL = f"{live_server.url}/plans/"

    page.goto("/")
    expect(page.get_by_role("heading", level=1)).to_contain_text("A fast HTTP(S) proxy")
    assert_accessible(page)
    shot(page, "01-home")
    page.get_by_role("link", name="Create an account").click()

    # Keyboard only: type into the labelled fields, Tab between them, Enter submits.
    page.get_by_label("E-mail address").fill("Erin@Example.org")
    page.keyboard.press("Tab")
    page.keyboard.type("short")
    page.keyboard.press("Tab")
    page.keyboard.type("short")
    page.keyboard.press("Enter")
    expect(page.locator(".errorlist")).to_contain_text("This password is too short")
    assert_accessible(page)
    shot(page, "02-signup-errors")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password again").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()

    # Signed in, but nothing can be claimed or issued before the address is verified.
    expect(page).to_have_url(f"{live_server.url}/dashboard/")
    expect(page.locator("#email-status")).to_contain_text("Verify your e-mail address.")
    expect(page.get_by_text("You have no plan yet.")).to_be_visible()
    page.get_by_role("button", name="Claim free plan").click()
    expect(page.locator(".messages")).to_contain_text("Verify your e-mail address first")
    assert Subscription.objects.count() == 0
    assert_accessible(page)
    shot(page, "03-dashboard-unverified")
    assert [m.to for m in mail.outbox] == [["erin@example.org"]]

    verify_from_outbox(page)
    expect(page).to_have_url(f"{live_server.url}/dashboard/")
    expect(page.locator("#email-status")).to_have_count(0)
    claim = page.get_by_role("button", name="Claim free plan")
    expect(claim).to_be_visible()
    claim.click()
    expect(page.locator(".messages")).to_contain_text("The Free plan is yours: 200.0 MB")
    expect(page.get_by_role("progressbar", name="Traffic used")).to_be_visible()
    expect(page.locator("#plan-status")).to_have_text("Active")
    expect(page.get_by_role("button", name="Claim free plan")).to_have_count(0)
    expect(page.get_by_role("img", name="Your traffic, last 30 days")).to_be_visible()
    assert_accessible(page)
    shot(page, "04-dashboard-after-claim")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Credentials").click()
    page.get_by_role("button", name="Issue credential").click()
    expect(page).to_have_url(re.compile(r"/credentials/issued/"))
    expect(page.get_by_role("alert")).to_contain_text("shown only this once")
    login = ProxyCredential.objects.get(user__username="erin@example.org").login
    assert login.startswith("erin-")
    curl_field = page.get_by_label("Try it with curl")
    shown = curl_field.input_value()
    assert shown.startswith(f"curl -x http://{login}:")
    assert shown.endswith(f"@127.0.0.1:{proxy.port} {live_server.url}/plans/")
    page.locator('[data-copy-target="field-curl"]').click()
    expect(page.locator("#copy-status")).to_have_text("Copied")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == shown
    assert_accessible(page)
    shot(page, "05-credential-issued")

    result = run_curl(copied)
    assert result.returncode == 0, (result.stderr, proxy.log())
    assert "Traffic counts both directions" in result.stdout  # the /plans/ page, via the proxy

    secret = copied.split(f"{login}:", 1)[1].split("@", 1)[0]
    wrong = copied.replace(secret, secret[:-1] + ("A" if secret[-1] != "A" else "B"))
    refused = run_curl(wrong.replace("curl ", "curl -s -o /dev/null -w %{http_code} ", 1))
    assert refused.stdout == "407", (refused, proxy.log())

    # Reloading the secret page issues nothing and shows the secret no more.
    page.reload()
    expect(page).to_have_url(f"{live_server.url}/credentials/")
    expect(page.locator(".messages")).to_contain_text("That secret was shown once")
    assert secret not in page.content()
    assert ProxyCredential.objects.filter(user__username="erin@example.org").count() == 1
    shot(page, "06-secret-page-reloaded")

    # Rotate asks first; the new secret's page, reloaded, does not rotate again.
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name=f"Rotate the secret of {login}").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Credential rotated")
    rotated = page.get_by_label("Try it with curl").input_value()
    page.reload()
    expect(page).to_have_url(f"{live_server.url}/credentials/")
    assert run_curl(rotated).returncode == 0, proxy.log()
    # The secret shown before no longer authenticates (the daemon may still hold it in
    # its cache for PROXY_AUTH_CACHE_TTL here: this test runs no control plugin).
    assert credential_authenticate(login=login, secret=secret) is None
    expect(page.get_by_role("cell", name=login, exact=True)).to_be_visible()
    expect(page.get_by_role("button", name=f"Revoke {login}")).to_have_class(
        re.compile("button--danger")
    )
    page.set_viewport_size({"width": 390, "height": 844})
    page.get_by_role("link", name="Dashboard").first.click()
    assert_accessible(page)
    shot(page, "07-dashboard-mobile")


def test_the_same_address_after_deleting_the_account_gets_no_second_free_plan(
    page: Any, live_server: Any
) -> None:
    free_plan()
    sign_up(page, "frank@example.org")
    verify_from_outbox(page)
    page.get_by_role("button", name="Claim free plan").click()
    expect(page.locator(".messages")).to_contain_text("The Free plan is yours")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Account").click()
    page.get_by_role("link", name="Delete my account…").click()
    page.get_by_label("Your password").fill(PASSWORD)
    page.get_by_role("button", name="Delete my account").click()
    expect(page.locator(".messages")).to_contain_text("The account frank@example.org")
    assert User.objects.filter(email="frank@example.org").exists() is False

    # Some minutes later (one verification mail per address per 3 minutes: the counters
    # are in the cache), the same address in other letters opens a new account. It is
    # verified, but gets no free plan.
    cache.clear()
    sign_up(page, "Frank@Example.org")
    verify_from_outbox(page)
    expect(page).to_have_url(f"{live_server.url}/dashboard/")
    expect(page.get_by_role("button", name="Claim free plan")).to_have_count(0)
    expect(page.get_by_text("Claimable once per person (e-mail address).").first).to_be_visible()
    again = User.objects.get(email__iexact="frank@example.org")
    assert Subscription.objects.filter(user_id=again.pk).exists() is False
    assert_accessible(page)
    shot(page, "08-same-address-after-deletion")


def test_login_is_throttled_with_a_clear_answer(page: Any, live_server: Any) -> None:
    user_create(username="gus", email="gus@example.org", password=PASSWORD, email_verified=True)
    page.goto("/accounts/login/")
    for _ in range(5):
        page.get_by_label("E-mail address").fill("gus@example.org")
        page.get_by_label("Password").fill("not-the-password")
        page.get_by_role("button", name="Log in").click()
        expect(page.locator(".errorlist")).to_contain_text("are not correct")
    # The right password now gets the same refusal, with status 429, until the window ends.
    page.get_by_label("E-mail address").fill("gus@example.org")
    page.get_by_label("Password").fill(PASSWORD)
    with page.expect_response(re.compile(r"/accounts/login/$")) as answer:
        page.get_by_role("button", name="Log in").click()
    assert answer.value.status == 429
    expect(page.locator(".errorlist")).to_contain_text("Too many failed login attempts")
    expect(page).to_have_url(re.compile(r"/accounts/login/$"))
    assert_accessible(page)
    shot(page, "09-login-throttled")


def test_operator_assigns_a_plan_and_sees_the_usage_bar(page: Any, live_server: Any) -> None:
    user_create(
        username="operator",
        email="op@example.org",
        password=PASSWORD,
        is_staff=True,
        is_superuser=True,
    )
    user_create(username="frank", email="frank@example.org", password=PASSWORD)
    pro = Plan.objects.create(
        name="Pro 10 GB", traffic_limit_bytes=10_000_000_000, duration_days=30
    )
    grace = user_create(username="grace", email="grace@example.org", password=PASSWORD)
    add_usage(plan_assign(user_id=grace.pk, plan=pro), days=10, per_day=850_000_000)

    # The admin's door is the portal's login (rate limits and, when required, TOTP).
    page.goto("/admin/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=%2Fadmin%2F"))
    page.get_by_label("E-mail address").fill("op@example.org")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    panel = page.locator(".gp-panel")
    expect(panel).to_contain_text("At a glance")
    expect(panel.locator(".gp-stat", has_text="No plan")).to_contain_text("2")
    expect(panel.locator(".gp-stat", has_text="Active subscriptions")).to_contain_text("1")
    expect(panel.locator(".gp-stat", has_text="Over 80 % used")).to_contain_text("1")
    expect(panel.locator(".gp-stat", has_text="Traffic today")).to_contain_text("850.0 MB")
    expect(panel.get_by_role("img", name="All traffic, last 14 days")).to_be_visible()
    shot(page, "10-admin-index")

    page.goto("/admin/accounts/user/?subscription=none")
    row = page.locator("#result_list tr", has_text="frank")
    row.get_by_role("checkbox").check()
    page.locator("select[name=action]").select_option("assign_plan")
    page.locator("select[name=plan]").select_option(label="Pro 10 GB")
    page.get_by_role("button", name="Go").click()
    expect(page.locator(".messagelist")).to_contain_text("Assigned Pro 10 GB to 1 user(s).")

    page.goto("/admin/accounts/user/")
    row = page.locator("#result_list tr", has_text="frank")
    bar = row.get_by_role("progressbar")
    expect(bar).to_be_visible()
    expect(bar).to_have_attribute("aria-valuenow", "0")
    expect(row).to_contain_text("0 B of 10.0 GB (0 %)")
    expect(row).to_contain_text("Active")

    row.get_by_role("checkbox").check()
    page.locator("select[name=action]").select_option("extend_subscription")
    page.locator("input[name=days]").fill("5")
    page.get_by_role("button", name="Go").click()
    expect(page.locator(".messagelist")).to_contain_text("Extended 1 subscription(s) by 5 day(s).")
    shot(page, "11-admin-users")

    # Usage as the traffic pipeline would record it, then frank's page shows it.
    add_usage(
        Subscription.objects.get(user_id=User.objects.get(username="frank").pk, is_current=True),
        days=4,
    )
    page.locator("#result_list").get_by_role("link", name="frank").click()
    expect(page.locator(".subscription-summary")).to_contain_text("Pro 10 GB")
    expect(page.locator(".subscription-summary").get_by_role("progressbar")).to_have_attribute(
        "aria-valuenow", "2"
    )
    chart = page.get_by_role("img", name="frank — last 30 days")
    expect(chart).to_be_visible()
    expect(chart.locator("rect.bar--down")).to_have_count(4)
    assert chart.bounding_box()["width"] > 600
    shot(page, "12-admin-user-page")


# Pages an operator's morning goes through, each checked at 1280 px: nothing is cut off
# (no horizontal scroll of the page, and no table wider than the box it is in).
FITS_JS = """
() => {
  const problems = [];
  const width = document.documentElement.scrollWidth;
  if (width > window.innerWidth + 1) problems.push(`page scrolls sideways: ${width}px`);
  for (const table of document.querySelectorAll("#content table")) {
    const room = table.parentElement.clientWidth;
    if (table.offsetWidth > room + 1)
      problems.push(`table ${table.id || table.className} is ${table.offsetWidth}px in ${room}px`);
  }
  return problems;
}
"""


def operator_morning_data() -> dict[str, Any]:
    operator = user_create(
        username="operator",
        email="op@example.org",
        password=PASSWORD,
        is_staff=True,
        is_superuser=True,
    )
    pro = Plan.objects.create(
        name="Pro 50 GB",
        traffic_limit_bytes=50_000_000_000,
        duration_days=30,
        price="19.90",
        speed_limit_bps=12_500_000,
        max_connections=20,
        device_limit=3,
        reset_cycle="monthly",
        quota_action="throttle",
        throttle_speed_bps=125_000,
    )
    users = {}
    for n, name in enumerate(["alice", "bob", "carol", "dave", "erin", "frank"]):
        user = user_create(
            username=name, email=f"{name}.longname@customer-example.org", password=PASSWORD
        )
        sub = plan_assign(user_id=user.pk, plan=pro, by="by operator")
        add_usage(sub, days=5 + n, per_day=900_000_000 * (n + 1))
        credential_issue(user=user)
        users[name] = user
    endpoint = WebhookEndpoint.objects.create(
        name="billing-hook", url="https://hooks.customer-example.org/goproxy/events", secret="s"
    )
    for name in ("alice", "frank"):
        sub = Subscription.objects.get(user_id=users[name].pk, is_current=True)
        note = Notification.objects.create(
            subscription=sub,
            user_id=sub.user_id,
            kind="quota",
            threshold=80,
            period_start=timezone.now(),
            email_error="SMTPRecipientsRefused: {'x@customer-example.org': (550, 'no such user')}",
        )
        WebhookDelivery.objects.create(
            endpoint=endpoint,
            notification=note,
            event_id=uuid.uuid4(),
            payload="{}",
            attempts=6,
            response_status=503,
            last_error="HTTP 503: Service Unavailable from the receiving end, retried",
        )
        TrafficSequence.objects.create(
            instance_id="proxy-eu-1.example:8888", user_id=sub.user_id, last_seq=123456
        )
        subscription_reset_usage(subscription=sub, by="by operator")
        FreePlanClaim.objects.create(user_id=sub.user_id, plan=free_plan())
    plan_queue(user_id=users["bob"].pk, plan=free_plan(), by="by operator")
    Feature.objects.create(name="Priority support", description="Answers within one business day")
    return {"operator": operator, "users": users, "plan": pro}


def fits(page: Any, name: str) -> None:
    shot(page, name)
    problems = page.evaluate(FITS_JS)
    assert problems == [], f"{page.url}: {problems}"


def test_admin_pages_fit_1280_px_and_speak_people(page: Any, live_server: Any) -> None:
    data = operator_morning_data()
    alice = data["users"]["alice"]
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto("/admin/")  # the admin's door is the portal's login
    page.get_by_label("E-mail address").fill("op@example.org")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#site-name")).to_have_text("goproxy operations")
    expect(page.locator("#content-main .app-internals")).to_contain_text("Outbox events")
    fits(page, "20-admin-index-1280")

    sub = Subscription.objects.get(user_id=alice.pk, is_current=True)
    pages = {
        "21-admin-users-1280": "/admin/accounts/user/",
        "22-admin-user-page-1280": f"/admin/accounts/user/{alice.pk}/change/",
        "23-admin-subscriptions-1280": "/admin/plans/subscription/",
        "24-admin-subscription-page-1280": f"/admin/plans/subscription/{sub.pk}/change/",
        "25-admin-usage-1280": "/admin/plans/usagebucket/",
        "26-admin-history-1280": "/admin/plans/subscriptionevent/",
        "27-admin-plans-1280": "/admin/plans/plan/",
        "28-admin-plan-form-1280": f"/admin/plans/plan/{data['plan'].pk}/change/",
        "29-admin-traffic-report-1280": "/admin/traffic/?period=30d",
        "30-admin-restrictions-1280": "/admin/plans/userrestriction/",
    }
    for name, url in pages.items():
        page.goto(url)
        fits(page, name)
    # And every other list, each with rows in it.
    listed = set(pages.values())
    for model in admin.site._registry:
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        if url not in listed:
            page.goto(url)
            fits(page, f"39-admin-list-{model._meta.app_label}-{model._meta.model_name}-1280")

    # The subscriptions list finds alice by her e-mail and names her on every row.
    page.goto("/admin/plans/subscription/")
    page.locator("#searchbar").fill("alice.longname")
    page.locator("#searchbar").press("Enter")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    expect(
        rows.first.get_by_role("link", name="alice.longname@customer-example.org")
    ).to_be_visible()

    # The subscription page is titled by the person and shows sizes in units.
    page.goto(f"/admin/plans/subscription/{sub.pk}/change/")
    expect(page.locator("#content h2").first).to_have_text(
        "alice.longname@customer-example.org — Pro 50 GB (active)"
    )
    page.goto(f"/admin/plans/plan/{data['plan'].pk}/change/")
    expect(page.locator("input[name=traffic_limit_bytes_0]")).to_have_value("50")
    expect(page.locator("select[name=speed_limit_bps_1] option:checked")).to_have_text("Mbit/s")

    # Deactivate from the user page: a confirmation first, then the deed, in the log.
    page.goto(f"/admin/accounts/user/{alice.pk}/change/")
    page.get_by_role("button", name="Deactivate…").click()
    expect(page.locator("#gp-confirm-question")).to_contain_text("can no longer log in")
    fits(page, "31-admin-confirm-deactivate-1280")
    page.get_by_role("button", name="Yes, deactivate").click()
    expect(page.locator(".messagelist")).to_contain_text("Deactivated 1 user(s).")
    page.goto("/admin/")
    expect(page.locator("#recent-actions-module")).to_contain_text("alice")
    alice.refresh_from_db()
    assert alice.is_active is False
