"""Self-play collapse: its signals (``collapse``) and gold-free guards against it (``margin_guard``, ``kind_cap``)."""
