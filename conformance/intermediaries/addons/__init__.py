"""One mitmproxy addon per intermediary behaviour; each file works alone with `mitmdump -s FILE`."""
