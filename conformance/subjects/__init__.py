"""Clients under test (the subjects of role `client`): adapters, the sandbox they run in, what they delivered.

Not to be confused with ``conformance/protocols/``, the suite's own protocol clients. An adapter is a folder
``clients/<name>/`` (``client.toml`` + an executable ``run``) driven with environment variables only; see
``clients/README.md`` for the contract.
"""
