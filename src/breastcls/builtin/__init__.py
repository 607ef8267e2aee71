"""The first-party plugins. Each module is an entry point of the ``breastcls`` group, exactly as a
third party's plugin would be."""
