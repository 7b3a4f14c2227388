"""Host-side layer with the semantics of the Windows Smart Card Minidriver API (v7). Issue 6."""
