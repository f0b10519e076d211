"""Push at scale: many sessions behind one intermediary, and the reconnect storm when it drops them (lemonade load)."""
