"""Writes on the plans DB, one module per concern, re-exported here.

- subscriptions: assign, claim the free plan, extend, reset, disable/enable, top up,
  switch, queue the next plan;
- lifecycle: the status machine (start, reset periods, expire, limit, renew from the
  queue) and the clock-driven sweeps;
- traffic: proxy deltas billed exactly once, hourly buckets, pruning sequence marks;
- restrictions: the proxy-facing state, versioned and published through the outbox;
- catalogue: plans and their features;
- tokens: the subscription-URL token;
- heartbeat: each plan-controller worker's lag, for the web's admin and /healthz;
- bulk: the set-based statements a traffic batch is made of (used by traffic).

A change that alters what the proxy allows writes its event (restriction, plan assigned)
to the plans outbox in the same transaction; the worker relays it to Kafka.
"""

from __future__ import annotations

from .catalogue import PlanInUse, plan_create, plan_delete, plan_update
from .heartbeat import controller_heartbeat_record
from .lifecycle import subscription_expire_due, subscription_reset_due, subscription_start_due
from .subscriptions import (
    FreePlanAlreadyClaimed,
    plan_assign,
    plan_claim_free,
    plan_queue,
    plan_queue_cancel,
    subscription_disable,
    subscription_disable_current,
    subscription_enable,
    subscription_extend,
    subscription_reset_usage,
    subscription_switch,
    subscription_top_up,
)
from .tokens import subscription_token_get_or_create, subscription_token_rotate
from .traffic import TrafficBatchResult, traffic_apply_batch, traffic_sequences_prune

__all__ = [
    "FreePlanAlreadyClaimed",
    "PlanInUse",
    "TrafficBatchResult",
    "controller_heartbeat_record",
    "plan_assign",
    "plan_claim_free",
    "plan_create",
    "plan_delete",
    "plan_queue",
    "plan_queue_cancel",
    "plan_update",
    "subscription_disable",
    "subscription_disable_current",
    "subscription_enable",
    "subscription_expire_due",
    "subscription_extend",
    "subscription_reset_due",
    "subscription_reset_usage",
    "subscription_start_due",
    "subscription_switch",
    "subscription_token_get_or_create",
    "subscription_token_rotate",
    "subscription_top_up",
    "traffic_apply_batch",
    "traffic_sequences_prune",
]
