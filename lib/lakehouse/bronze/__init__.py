"""Bronze: landed files parsed byte-exactly and kept as delivered, with where and when they
came from."""
