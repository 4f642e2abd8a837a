"""mobility: shared library of the mobility suite (codecs, crypto, engines' common types, service layer, lab)."""
