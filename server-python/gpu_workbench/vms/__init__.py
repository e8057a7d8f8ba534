"""GPU machines: one module per provider behind one interface, a cost ledger, budgets and
idle autostop. Providers import their SDKs (boto3) only when used."""

from __future__ import annotations
