"""The suite's own protocol clients (not the clients under test), all on one captured connection (``connection.py``)."""
