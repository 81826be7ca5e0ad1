"""The console's routes, a Flask blueprint per group of pages, each with the JSON its pages poll.

``auth`` (login, logout, health), ``workloads`` (the list, one workload, its failures and
records), ``fleet``, ``vms``, ``audit``, ``actions`` (the only writes) and ``errors`` (RqpError
and Redis errors as one JSON line). ``app.create_app`` registers them all.
"""
