"""The pure model of the lab: topologies, NAT routers as RFC 4787 tuples and their rulesets, build plans,
scenarios, theory, statistics, records and the runner <-> agent messages. No side effects.
"""
